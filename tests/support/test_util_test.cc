// The shared test helpers themselves: error_of must fail a test when nothing is thrown, TempDir
// must give fresh directories and remove them.
#include "support/test_util.h"

#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest-spi.h>
#include <gtest/gtest.h>

#include "engine/core/error.h"

namespace flexgen {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using testing::error_of;
using testing::TempDir;

TEST(TestUtilErrorOf, ReturnsTheMessage) {
  EXPECT_EQ(error_of([] { fail("field 'x' is bad"); }), "field 'x' is bad");
}

TEST(TestUtilErrorOf, NothingThrownIsATestFailure) {
  std::string message = "unchanged";
  EXPECT_NONFATAL_FAILURE(message = error_of([] {}), "none was thrown");
  EXPECT_EQ(message, "");
}

TEST(TestUtilErrorOf, OtherExceptionsPropagate) {
  EXPECT_THROW(error_of([] { throw std::runtime_error("not ours"); }), std::runtime_error);
}

TEST(TestUtilTempDir, FreshEmptyUniqueAndRemoved) {
  fs::path first_path;
  {
    const TempDir first;
    const TempDir second;
    first_path = first.path();
    EXPECT_TRUE(fs::is_directory(first.path()));
    EXPECT_TRUE(first.empty());
    EXPECT_NE(first.path(), second.path());
    EXPECT_EQ(first / "a.txt", first.path() / "a.txt");
    const fs::path file = first.write("a.txt", std::string("x\0y", 3));
    EXPECT_EQ(file, first.path() / "a.txt");
    EXPECT_FALSE(first.empty());
    std::ifstream in(file, std::ios::binary);
    EXPECT_EQ(std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()),
              std::string("x\0y", 3));
    fs::create_directories(first / "sub" / "deeper");
    fs::permissions(first.path(), fs::perms::owner_read | fs::perms::owner_exec);
  }
  EXPECT_FALSE(fs::exists(first_path));
}

TEST(TestUtilTempDir, UnderAGivenParent) {
  const TempDir parent;
  fs::path child_path;
  {
    const TempDir child(parent.path());
    child_path = child.path();
    EXPECT_EQ(child.path().parent_path(), parent.path());
    EXPECT_TRUE(fs::is_directory(child.path()));
  }
  EXPECT_FALSE(fs::exists(child_path));
  EXPECT_TRUE(parent.empty());
}

}  // namespace
}  // namespace flexgen
