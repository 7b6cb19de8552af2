#include "engine/sweep/provenance.h"

#include <cstdlib>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

#include "support/test_util.h"

namespace flexgen {
namespace {

// Runs a shell command in `dir`; true when it exits 0.
bool sh(const std::filesystem::path& dir, const std::string& command) {
  const std::string full = "cd '" + dir.string() + "' && (" + command + ") >/dev/null 2>&1";
  return std::system(full.c_str()) == 0;
}

void write(const std::filesystem::path& path, const std::string& text) {
  std::filesystem::create_directories(path.parent_path());
  std::ofstream(path) << text;
}

TEST(Provenance, CommitIsDirtyOnlyForChangesOutsideResultsAndFigures) {
  flexgen::testing::TempDir dir;
  const auto root = dir.path();
  if (!sh(root, "git init -q . && git config user.email t@t && git config user.name t")) GTEST_SKIP() << "no git";
  write(root / "src.cc", "int x;\n");
  write(root / "results/sweeps/a.jsonl", "{}\n");
  write(root / "plots/figures/a.svg", "<svg/>\n");
  write(root / "plots/a.py", "print(1)\n");
  ASSERT_TRUE(sh(root, "git add -A && git commit -qm one"));
  std::string head;
  {
    ASSERT_TRUE(sh(root, "git rev-parse --short=7 HEAD > .git/head.txt"));
    std::ifstream in(root / ".git/head.txt");
    std::getline(in, head);
  }
  ASSERT_EQ(head.size(), 7u);
  EXPECT_EQ(git_commit(root), head);

  // Rewriting the rows and the figures keeps the commit clean, also when the file is deleted.
  std::filesystem::remove(root / "results/sweeps/a.jsonl");
  write(root / "plots/figures/a.svg", "<svg></svg>\n");
  EXPECT_EQ(git_commit(root), head);

  // A change to anything else, plots' scripts included, makes it dirty.
  write(root / "plots/a.py", "print(2)\n");
  EXPECT_EQ(git_commit(root), head + "-dirty");
  ASSERT_TRUE(sh(root, "git checkout -q -- plots/a.py"));
  write(root / "src.cc", "int y;\n");
  EXPECT_EQ(git_commit(root), head + "-dirty");
  // Untracked files do not count.
  ASSERT_TRUE(sh(root, "git checkout -q -- src.cc"));
  write(root / "new.cc", "int z;\n");
  EXPECT_EQ(git_commit(root), head);
}

TEST(Provenance, NoCommitOutsideAWorkTree) {
  flexgen::testing::TempDir dir;
  EXPECT_EQ(git_commit(dir.path() / "nowhere"), "");
}

}  // namespace
}  // namespace flexgen
