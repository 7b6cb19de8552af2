// The output file: whole lines appended, an unfinished last line dropped on opening, the ids of
// the complete lines collected, foreign content and a second writer refused.
#include "engine/batch/output_file.h"

#include <fstream>
#include <sstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "support/test_util.h"

namespace flexgen {
namespace {

using ::testing::HasSubstr;
using ::testing::UnorderedElementsAre;
using testing::TempDir;

std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST(OutputFile, ANewFileGetsWholeLinesAppended) {
  TempDir dir;
  const auto path = dir / "out.jsonl";
  {
    OutputFile out(path);
    EXPECT_TRUE(out.done_ids().empty());
    EXPECT_EQ(out.lines_found(), 0);
    out.append_block({"{\"id\":\"a\"}\n", "{\"id\":2}\n"});
    out.append_block({});
    out.append_block({"{\"id\":\"c\",\"text\":\"x\"}\n"});
  }
  EXPECT_EQ(slurp(path), "{\"id\":\"a\"}\n{\"id\":2}\n{\"id\":\"c\",\"text\":\"x\"}\n");
  OutputFile again(path);
  EXPECT_THAT(again.done_ids(), UnorderedElementsAre("a", "2", "c"));
  EXPECT_EQ(again.lines_found(), 3);
  EXPECT_EQ(again.partial_bytes_dropped(), 0);
}

TEST(OutputFile, AnUnfinishedLastLineIsDroppedAndTheRestAppendedAfterTheLastWholeLine) {
  TempDir dir;
  const auto path = dir.write("out.jsonl", "{\"id\":\"a\"}\n{\"id\":7}\n{\"id\":\"b\",\"te");
  {
    OutputFile out(path);
    EXPECT_THAT(out.done_ids(), UnorderedElementsAre("a", "7"));
    EXPECT_EQ(out.partial_bytes_dropped(), 13);  // {"id":"b","te
    EXPECT_EQ(slurp(path), "{\"id\":\"a\"}\n{\"id\":7}\n");
    out.append_block({"{\"id\":\"b\"}\n"});
  }
  EXPECT_EQ(slurp(path), "{\"id\":\"a\"}\n{\"id\":7}\n{\"id\":\"b\"}\n");
  // A file holding only an unfinished line becomes empty.
  const auto lone = dir.write("lone.jsonl", "{\"id\":");
  OutputFile out(lone);
  EXPECT_TRUE(out.done_ids().empty());
  EXPECT_EQ(slurp(lone), "");
}

TEST(OutputFile, ForeignContentIsRefusedNamingTheLine) {
  TempDir dir;
  const auto path = dir.write("out.jsonl", "{\"id\":\"a\"}\nhello\n");
  EXPECT_THAT(testing::error_of([&] { OutputFile out(path); }), HasSubstr("out.jsonl:2: malformed JSON"));
  const auto no_id = dir.write("no_id.jsonl", "{\"text\":\"a\"}\n");
  EXPECT_THAT(testing::error_of([&] { OutputFile out(no_id); }),
              HasSubstr("no_id.jsonl:1: not a completion line (expected an object with an id)"));
  const auto blank = dir.write("blank.jsonl", "{\"id\":1}\n\n");
  EXPECT_THAT(testing::error_of([&] { OutputFile out(blank); }), HasSubstr("blank.jsonl:2: malformed JSON"));
  // Nothing was changed.
  EXPECT_EQ(slurp(path), "{\"id\":\"a\"}\nhello\n");
}

TEST(OutputFile, ASecondWriterAndNonFilesAreRefused) {
  TempDir dir;
  const auto path = dir / "out.jsonl";
  OutputFile first(path);
  EXPECT_THAT(testing::error_of([&] { OutputFile second(path); }), HasSubstr("the output file is in use"));
  EXPECT_THAT(testing::error_of([&] { OutputFile d(dir.path()); }), HasSubstr("cannot open the output file"));
  EXPECT_THAT(testing::error_of([&] { OutputFile m(dir / "missing" / "out.jsonl"); }),
              HasSubstr("cannot open the output file"));
}

}  // namespace
}  // namespace flexgen
