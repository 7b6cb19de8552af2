#include "engine/runtime/disk_store.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "engine/core/error.h"
#include "support/faults.h"
#include "support/test_util.h"

namespace flexgen {
namespace {

namespace fs = std::filesystem;
using fault::Effect;
using fault::Point;
using ::testing::HasSubstr;
using testing::error_of;
using testing::TempDir;

constexpr Bytes kUnlimited = std::numeric_limits<Bytes>::max() / 4;

std::vector<std::string> list_dir(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir)) names.push_back(entry.path().filename());
  return names;
}

std::vector<unsigned char> random_bytes(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<unsigned char> bytes(n);
  for (auto& b : bytes) b = static_cast<unsigned char>(rng() & 0xff);
  return bytes;
}

using testing::FaultGuard;

// ---- round trips ------------------------------------------------------------------------------

// Both the default 4 MiB chunks and 64 KiB chunks (many chunks per transfer, run in parallel).
class DiskStoreRoundTrip : public ::testing::TestWithParam<Bytes> {
 protected:
  DiskStoreOptions options() const {
    DiskStoreOptions o;
    o.chunk_bytes = GetParam();
    return o;
  }
};

TEST_P(DiskStoreRoundTrip, VariousSizes) {
  TempDir dir;
  DiskStore store(dir.path(), kUnlimited, options());
  const std::vector<Bytes> sizes = {1, 4095, 4096, 4097, 3 * kMiB + 7};
  std::uint64_t seed = 1;
  for (Bytes size : sizes) {
    const DiskRegion region = store.allocate(size, str_cat("t", size));
    const auto data = random_bytes(static_cast<std::size_t>(size), seed++);
    store.write_sync(region, data.data(), size);
    std::vector<unsigned char> back(static_cast<std::size_t>(size), 0);
    store.read_sync(region, back.data(), size);
    EXPECT_EQ(back, data) << "size " << size;
  }
}

TEST_P(DiskStoreRoundTrip, OffsetsInsideARegion) {
  TempDir dir;
  DiskStore store(dir.path(), kUnlimited, options());
  constexpr Bytes kSize = 300000;
  const DiskRegion region = store.allocate(kSize, "kv");
  auto reference = random_bytes(kSize, 7);
  store.write_sync(region, reference.data(), kSize);

  struct Piece {
    Bytes offset;
    Bytes length;
  };
  const std::vector<Piece> pieces = {{1, 10},       {4095, 4097}, {4096, 8192},  {5000, 1},
                                     {70001, 20000}, {kSize - 3, 3}, {65530, 140000}};
  std::uint64_t seed = 100;
  for (const Piece& p : pieces) {
    const auto patch = random_bytes(static_cast<std::size_t>(p.length), seed++);
    store.write_sync(region, patch.data(), p.length, p.offset);
    std::memcpy(reference.data() + p.offset, patch.data(), patch.size());
  }
  std::vector<unsigned char> whole(kSize, 0);
  store.read_sync(region, whole.data(), kSize);
  EXPECT_EQ(whole, reference);

  for (const Piece& p : pieces) {
    std::vector<unsigned char> part(static_cast<std::size_t>(p.length + 1), 0);
    store.read_sync(region, part.data() + 1, p.length, p.offset);  // unaligned destination
    const std::vector<unsigned char> expected(reference.begin() + p.offset,
                                              reference.begin() + p.offset + p.length);
    EXPECT_EQ(std::vector<unsigned char>(part.begin() + 1, part.end()), expected)
        << "offset " << p.offset;
  }
}

TEST_P(DiskStoreRoundTrip, UnalignedHostBuffers) {
  TempDir dir;
  DiskStore store(dir.path(), kUnlimited, options());
  constexpr Bytes kSize = 1 * kMiB + 123;
  const DiskRegion region = store.allocate(kSize, "w");
  const auto data = random_bytes(kSize, 3);
  std::vector<unsigned char> src(kSize + 16);
  std::memcpy(src.data() + 3, data.data(), kSize);
  store.write_sync(region, src.data() + 3, kSize);
  std::vector<unsigned char> dst(kSize + 16, 0);
  store.read_sync(region, dst.data() + 5, kSize);
  EXPECT_EQ(std::vector<unsigned char>(dst.begin() + 5, dst.begin() + 5 + kSize), data);
}

TEST_P(DiskStoreRoundTrip, ReadsTouchOnlyTheRequestedBytesOfTheCallerBuffer) {
  TempDir dir;
  DiskStore store(dir.path(), kUnlimited, options());
  constexpr Bytes kSize = 2 * 4096 + 100;  // the last block is partly beyond the logical size
  const DiskRegion region = store.allocate(kSize, "act");
  const auto data = random_bytes(kSize, 4);
  store.write_sync(region, data.data(), kSize);

  constexpr std::size_t kGuard = 8192;
  constexpr unsigned char kPoison = 0xAB;
  // Tail of the region: 50 bytes at its end, into a buffer with poisoned guard bytes around it.
  std::vector<unsigned char> buffer(kGuard + 50 + kGuard, kPoison);
  store.read_sync(region, buffer.data() + kGuard, 50, kSize - 50);
  for (std::size_t i = 0; i < kGuard; ++i) {
    ASSERT_EQ(buffer[i], kPoison) << i;
    ASSERT_EQ(buffer[kGuard + 50 + i], kPoison) << i;
  }
  EXPECT_EQ(0, std::memcmp(buffer.data() + kGuard, data.data() + kSize - 50, 50));

  // The whole region into an aligned buffer of exactly kSize bytes plus guard.
  std::vector<unsigned char> whole(kSize + kGuard, kPoison);
  store.read_sync(region, whole.data(), kSize);
  for (std::size_t i = 0; i < kGuard; ++i) ASSERT_EQ(whole[kSize + i], kPoison) << i;
}

TEST_P(DiskStoreRoundTrip, ManyConcurrentOperations) {
  TempDir dir;
  DiskStore store(dir.path(), kUnlimited, options());
  constexpr int kRegions = 40;
  std::vector<DiskRegion> regions;
  std::vector<std::vector<unsigned char>> data;
  for (int i = 0; i < kRegions; ++i) {
    const Bytes size = 1 + static_cast<Bytes>(i) * 37 * 1024 + i * 13;
    regions.push_back(store.allocate(size, str_cat("r", i)));
    data.push_back(random_bytes(static_cast<std::size_t>(size), 1000 + static_cast<unsigned>(i)));
  }
  std::vector<std::future<void>> pending;
  for (int i = 0; i < kRegions; ++i) {
    pending.push_back(store.write(regions[i], data[i].data(), regions[i].size));
  }
  for (auto& f : pending) f.get();
  pending.clear();
  std::vector<std::vector<unsigned char>> back(kRegions);
  for (int i = 0; i < kRegions; ++i) {
    back[i].assign(data[i].size(), 0);
    pending.push_back(store.read(regions[i], back[i].data(), regions[i].size));
  }
  for (auto& f : pending) f.get();
  for (int i = 0; i < kRegions; ++i) EXPECT_EQ(back[i], data[i]) << "region " << i;
}

// Disjoint unaligned writes that share 4 KiB blocks, all in flight at once: each block's
// read-modify-write must not lose another operation's bytes.
TEST_P(DiskStoreRoundTrip, ConcurrentWritesSharingBlocks) {
  TempDir dir;
  DiskStore store(dir.path(), kUnlimited, options());
  constexpr Bytes kPiece = 333;
  constexpr int kPieces = 400;
  const DiskRegion region = store.allocate(kPiece * kPieces, "shared");
  const auto reference = random_bytes(static_cast<std::size_t>(kPiece * kPieces), 55);
  for (int round = 0; round < 3; ++round) {
    std::vector<unsigned char> zeros(reference.size(), 0);
    store.write_sync(region, zeros.data(), region.size);
    std::vector<std::future<void>> pending;
    for (int i = 0; i < kPieces; ++i) {
      pending.push_back(store.write(region, reference.data() + i * kPiece, kPiece, i * kPiece));
    }
    for (auto& f : pending) f.get();
    std::vector<unsigned char> back(reference.size(), 0);
    store.read_sync(region, back.data(), region.size);
    ASSERT_EQ(back, reference) << "round " << round;
  }
}

INSTANTIATE_TEST_SUITE_P(Chunks, DiskStoreRoundTrip, ::testing::Values(4 * kMiB, 64 * kKiB),
                         [](const auto& param_info) { return str_cat(param_info.param / kKiB, "KiB"); });

// ---- allocation and budget --------------------------------------------------------------------

TEST(DiskStore, RegionsAreAlignedAndDoNotOverlap) {
  TempDir dir;
  DiskStore store(dir.path(), kUnlimited);
  const DiskRegion a = store.allocate(1, "a");
  const DiskRegion b = store.allocate(4096, "b");
  const DiskRegion c = store.allocate(4097, "c");
  EXPECT_EQ(a.offset, 0);
  EXPECT_EQ(a.capacity, 4096);
  EXPECT_EQ(b.offset, 4096);
  EXPECT_EQ(b.capacity, 4096);
  EXPECT_EQ(c.offset, 8192);
  EXPECT_EQ(c.capacity, 8192);
  EXPECT_EQ(c.size, 4097);
  EXPECT_EQ(store.used_bytes(), 16384);

  // Fill each region completely with its own byte; neighbours must keep theirs.
  const std::vector<DiskRegion> regions = {a, b, c};
  for (std::size_t i = 0; i < regions.size(); ++i) {
    std::vector<unsigned char> fill(static_cast<std::size_t>(regions[i].size),
                                    static_cast<unsigned char>(0x11 * (i + 1)));
    store.write_sync(regions[i], fill.data(), regions[i].size);
  }
  for (std::size_t i = 0; i < regions.size(); ++i) {
    std::vector<unsigned char> back(static_cast<std::size_t>(regions[i].size), 0);
    store.read_sync(regions[i], back.data(), regions[i].size);
    EXPECT_EQ(back, std::vector<unsigned char>(back.size(), static_cast<unsigned char>(0x11 * (i + 1))))
        << regions[i].label;
  }
}

TEST(DiskStore, ReleaseReusesSpaceAndTracksPeak) {
  TempDir dir;
  DiskStore store(dir.path(), kUnlimited);
  const DiskRegion a = store.allocate(8192, "a");
  const DiskRegion b = store.allocate(4096, "b");
  const DiskRegion c = store.allocate(4000, "c");
  EXPECT_EQ(store.used_bytes(), 16384);
  store.release(a);
  EXPECT_EQ(store.used_bytes(), 8192);
  EXPECT_EQ(store.peak_bytes(), 16384);
  const DiskRegion d = store.allocate(4096, "d");  // first fit: a's old place
  const DiskRegion e = store.allocate(100, "e");   // the rest of a's place
  const DiskRegion f = store.allocate(1, "f");     // nothing free below the end
  EXPECT_EQ(d.offset, 0);
  EXPECT_EQ(e.offset, 4096);
  EXPECT_EQ(f.offset, 16384);
  EXPECT_EQ(store.peak_bytes(), 20480);
  for (const DiskRegion& r : {b, c, d, e, f}) store.release(r);
  EXPECT_EQ(store.used_bytes(), 0);
  // Everything coalesced: a large region starts at 0 again.
  EXPECT_EQ(store.allocate(5 * 4096, "g").offset, 0);
  EXPECT_EQ(store.peak_bytes(), 20480);
}

TEST(DiskStore, AllocationBeyondBudgetFailsBeforeAnyWrite) {
  TempDir dir;
  DiskStore store(dir.path(), 10000);
  const DiskRegion a = store.allocate(8192, "w.0");
  const Bytes file_before = store.file_bytes();
  const std::string msg = error_of([&] { store.allocate(10, "kv.layer3"); });
  // 8192 + 4096 - 10000 = 2288 bytes = 2.23 KiB over; 10000 bytes = 9.77 KiB.
  EXPECT_THAT(msg, HasSubstr("plan needs 2.2 KiB more than --disk-mem 9.8 KiB allows"));
  EXPECT_THAT(msg, HasSubstr("'kv.layer3'"));
  EXPECT_EQ(store.used_bytes(), 8192);
  EXPECT_EQ(store.file_bytes(), file_before);
  EXPECT_EQ(file_before, 8192);
  store.release(a);
}

TEST(DiskStore, ReserveBeyondBudgetFails) {
  TempDir dir;
  DiskStore store(dir.path(), 1 * kGiB);
  const std::string msg = error_of([&] { store.reserve(3 * kGiB / 2); });
  EXPECT_THAT(msg, HasSubstr("plan needs 512.0 MiB more than --disk-mem 1.0 GiB allows"));
  EXPECT_EQ(store.file_bytes(), 0);
}

TEST(DiskStore, ReserveMoreThanTheFileSystemHasFails) {
  TempDir dir;
  struct statvfs fs_info {};
  ASSERT_EQ(::statvfs(dir.path().c_str(), &fs_info), 0);
  const Bytes free_bytes =
      static_cast<Bytes>(fs_info.f_bavail) * static_cast<Bytes>(fs_info.f_frsize);
  DiskStore store(dir.path(), kUnlimited);
  const std::string msg = error_of([&] { store.reserve(free_bytes + 64 * kGiB); });
  EXPECT_THAT(msg, HasSubstr("offload dir " + dir.path().string() + " has "));
  EXPECT_THAT(msg, HasSubstr(" free, the plan needs "));
  EXPECT_EQ(store.file_bytes(), 0);
  EXPECT_TRUE(list_dir(dir.path()).empty());
}

TEST(DiskStore, ReservePreallocatesTheRoundedSize) {
  TempDir dir;
  DiskStore store(dir.path(), kUnlimited);
  store.reserve(1 * kMiB + 1);
  EXPECT_EQ(store.file_bytes(), 1 * kMiB + 4096);
  store.reserve(4096);  // smaller: nothing changes
  EXPECT_EQ(store.file_bytes(), 1 * kMiB + 4096);
  // Allocations inside the reservation do not grow the file.
  store.allocate(1 * kMiB, "w");
  EXPECT_EQ(store.file_bytes(), 1 * kMiB + 4096);
}

TEST(DiskStore, ReserveFallsBackToTruncateWithoutFallocate) {
  FLEXGEN_SKIP_WITHOUT_FAULT_INJECTION();
  FaultGuard guard;
  TempDir dir;
  DiskStore store(dir.path(), kUnlimited);
  fault::arm(Point::kDiskPreallocate, Effect::kFail, 0, EOPNOTSUPP);
  store.reserve(3 * 4096);
  EXPECT_EQ(store.file_bytes(), 3 * 4096);
}

TEST(DiskStore, ReservePreallocationFailureIsClearAndLeavesNothing) {
  FLEXGEN_SKIP_WITHOUT_FAULT_INJECTION();
  FaultGuard guard;
  TempDir dir;
  {
    DiskStore store(dir.path(), kUnlimited);
    fault::arm(Point::kDiskPreallocate, Effect::kFail, 0, ENOSPC);
    const std::string msg = error_of([&] { store.reserve(1 * kMiB); });
    EXPECT_THAT(msg, HasSubstr("cannot preallocate 1.0 MiB in offload dir " + dir.path().string()));
    EXPECT_THAT(msg, HasSubstr("No space left on device"));
    EXPECT_EQ(store.file_bytes(), 0);
    EXPECT_TRUE(list_dir(dir.path()).empty());
  }
  EXPECT_TRUE(list_dir(dir.path()).empty());
}

// ---- failures ---------------------------------------------------------------------------------

TEST(DiskStore, InjectedNoSpaceOnWriteIsAClearErrorAndLeavesNoFiles) {
  FLEXGEN_SKIP_WITHOUT_FAULT_INJECTION();
  FaultGuard guard;
  TempDir dir;
  {
    DiskStore store(dir.path(), kUnlimited);
    const DiskRegion region = store.allocate(3 * kMiB + 7, "w.layer7");
    const auto data = random_bytes(3 * kMiB + 7, 9);
    fault::arm(Point::kDiskWrite, Effect::kFail, 0, ENOSPC);
    const std::string msg = error_of([&] { store.write_sync(region, data.data(), region.size); });
    EXPECT_THAT(msg, HasSubstr("disk tier: write of 3145735 bytes"));
    EXPECT_THAT(msg, HasSubstr("'w.layer7'"));
    EXPECT_THAT(msg, HasSubstr(store.file_name()));
    EXPECT_THAT(msg, HasSubstr("failed: No space left on device"));
    EXPECT_TRUE(list_dir(dir.path()).empty());
    // The failure was one-off: the store still works.
    fault::disarm_all();
    store.write_sync(region, data.data(), region.size);
    std::vector<unsigned char> back(data.size(), 0);
    store.read_sync(region, back.data(), region.size);
    EXPECT_EQ(back, data);
  }
  EXPECT_TRUE(list_dir(dir.path()).empty());
}

TEST(DiskStore, WriteErrorInOneOfManyChunksFailsTheOperation) {
  FLEXGEN_SKIP_WITHOUT_FAULT_INJECTION();
  FaultGuard guard;
  TempDir dir;
  DiskStoreOptions options;
  options.chunk_bytes = 64 * kKiB;
  DiskStore store(dir.path(), kUnlimited, options);
  const DiskRegion region = store.allocate(1 * kMiB, "kv");
  const auto data = random_bytes(1 * kMiB, 10);
  fault::arm(Point::kDiskWrite, Effect::kFail, 9, EIO);  // the 10th of 16 chunks
  const std::string msg = error_of([&] { store.write(region, data.data(), region.size).get(); });
  EXPECT_THAT(msg, HasSubstr("write of 1048576 bytes"));
  EXPECT_THAT(msg, HasSubstr("Input/output error"));
}

TEST(DiskStore, DiskThatStopsAcceptingBytesIsNoSpace) {
  FLEXGEN_SKIP_WITHOUT_FAULT_INJECTION();
  FaultGuard guard;
  TempDir dir;
  DiskStore store(dir.path(), kUnlimited);
  const DiskRegion region = store.allocate(64 * kKiB, "w");
  const auto data = random_bytes(64 * kKiB, 11);
  fault::arm(Point::kDiskWrite, Effect::kStall, 0);
  const std::string msg = error_of([&] { store.write_sync(region, data.data(), region.size); });
  EXPECT_THAT(msg, HasSubstr("No space left on device"));
  EXPECT_TRUE(list_dir(dir.path()).empty());
}

TEST(DiskStore, ShortWritesAndReadsAreRetried) {
  FLEXGEN_SKIP_WITHOUT_FAULT_INJECTION();
  FaultGuard guard;
  TempDir dir;
  DiskStore store(dir.path(), kUnlimited);
  const DiskRegion region = store.allocate(1 * kMiB + 5, "w");
  const auto data = random_bytes(1 * kMiB + 5, 12);
  fault::arm(Point::kDiskWrite, Effect::kShort, 0);
  store.write_sync(region, data.data(), region.size);
  fault::arm(Point::kDiskRead, Effect::kShort, 0);
  std::vector<unsigned char> back(data.size(), 0);
  store.read_sync(region, back.data(), region.size);
  EXPECT_EQ(back, data);
}

TEST(DiskStore, InjectedReadErrorIsAClearError) {
  FLEXGEN_SKIP_WITHOUT_FAULT_INJECTION();
  FaultGuard guard;
  TempDir dir;
  DiskStore store(dir.path(), kUnlimited);
  const DiskRegion region = store.allocate(10000, "kv.layer1");
  const auto data = random_bytes(10000, 13);
  store.write_sync(region, data.data(), region.size);
  fault::arm(Point::kDiskRead, Effect::kFail, 0, EIO);
  std::vector<unsigned char> back(data.size(), 0);
  const std::string msg = error_of([&] { store.read_sync(region, back.data(), region.size); });
  EXPECT_THAT(msg, HasSubstr("disk tier: read of 10000 bytes"));
  EXPECT_THAT(msg, HasSubstr("'kv.layer1'"));
  EXPECT_THAT(msg, HasSubstr("failed: Input/output error"));
}

TEST(DiskStore, OutOfRangeAndReleasedRegionsAreRefused) {
  TempDir dir;
  DiskStore store(dir.path(), kUnlimited);
  const DiskRegion region = store.allocate(100, "x");
  std::vector<unsigned char> buffer(200, 0);
  EXPECT_THAT(error_of([&] { store.write(region, buffer.data(), 101); }),
              HasSubstr("write of 101 bytes at offset 0 is outside region 'x' of 100 bytes"));
  EXPECT_THAT(error_of([&] { store.read(region, buffer.data(), 10, 95); }),
              HasSubstr("read of 10 bytes at offset 95 is outside region 'x' of 100 bytes"));
  EXPECT_THAT(error_of([&] { store.read(region, buffer.data(), 1, -1); }),
              HasSubstr("is outside region 'x'"));
  store.release(region);
  EXPECT_THAT(error_of([&] { store.write(region, buffer.data(), 10); }),
              HasSubstr("region 'x', which is not allocated"));
  EXPECT_THAT(error_of([&] { store.allocate(-1, "neg"); }), HasSubstr("'neg' has a negative size"));
}

// A real full file system: set FLEXGEN_TEST_SMALL_FS to a directory on a small, empty file system
// (e.g. `mount -t tmpfs -o size=1m tmpfs /mnt/small`); skipped otherwise.
TEST(DiskStore, RealFullFileSystemGivesNoSpaceAndLeavesNoFiles) {
  const char* small = std::getenv("FLEXGEN_TEST_SMALL_FS");
  if (small == nullptr) GTEST_SKIP() << "FLEXGEN_TEST_SMALL_FS is not set";
  TempDir dir(small);
  struct statvfs fs_info {};
  ASSERT_EQ(::statvfs(dir.path().c_str(), &fs_info), 0);
  const Bytes free_bytes =
      static_cast<Bytes>(fs_info.f_bavail) * static_cast<Bytes>(fs_info.f_frsize);
  ASSERT_LT(free_bytes, 256 * kMiB) << "FLEXGEN_TEST_SMALL_FS must be a small file system";
  {
    DiskStore store(dir.path(), kUnlimited);
    EXPECT_THAT(error_of([&] { store.reserve(free_bytes + kMiB); }),
                HasSubstr(" free, the plan needs "));
    const Bytes size = free_bytes + kMiB;
    const DiskRegion region = store.allocate(size, "w.big");
    const auto data = random_bytes(static_cast<std::size_t>(size), 16);
    const std::string msg = error_of([&] { store.write_sync(region, data.data(), size); });
    EXPECT_THAT(msg, HasSubstr("'w.big'"));
    EXPECT_THAT(msg, HasSubstr("No space left on device"));
    EXPECT_TRUE(list_dir(dir.path()).empty());
  }
  EXPECT_TRUE(list_dir(dir.path()).empty());
  // The space came back with the file.
  ASSERT_EQ(::statvfs(dir.path().c_str(), &fs_info), 0);
  EXPECT_EQ(static_cast<Bytes>(fs_info.f_bavail) * static_cast<Bytes>(fs_info.f_frsize), free_bytes);
}

// ---- the offload directory --------------------------------------------------------------------

TEST(DiskStore, NoOffloadFileIsVisibleWhileAliveOrAfterwards) {
  TempDir dir;
  {
    DiskStore store(dir.path(), kUnlimited);
    const DiskRegion region = store.allocate(256 * kKiB, "w");
    const auto data = random_bytes(256 * kKiB, 14);
    store.write_sync(region, data.data(), region.size);
    EXPECT_TRUE(list_dir(dir.path()).empty());
    EXPECT_THAT(store.file_name(), HasSubstr(dir.path().string() + "/flexgen-"));
    RecordProperty("direct_io", store.direct_io() ? "true" : "false");
  }
  EXPECT_TRUE(list_dir(dir.path()).empty());
}

TEST(DiskStore, NamedFileFallbackWithoutTmpfileIsUnlinkedAtOnce) {
  FLEXGEN_SKIP_WITHOUT_FAULT_INJECTION();
  FaultGuard guard;
  TempDir dir;
  fault::arm(Point::kDiskOpenTmpfile, Effect::kFail, 0, EOPNOTSUPP);
  {
    DiskStore store(dir.path(), kUnlimited);
    const DiskRegion region = store.allocate(5000, "w");
    const auto data = random_bytes(5000, 15);
    store.write_sync(region, data.data(), region.size);
    std::vector<unsigned char> back(data.size(), 0);
    store.read_sync(region, back.data(), region.size);
    EXPECT_EQ(back, data);
    EXPECT_TRUE(list_dir(dir.path()).empty());
  }
  EXPECT_TRUE(list_dir(dir.path()).empty());
}

TEST(DiskStore, CreatesAMissingDirectory) {
  TempDir dir;
  const fs::path nested = dir.path() / "a" / "b";
  DiskStore store(nested, kUnlimited);
  EXPECT_TRUE(fs::is_directory(nested));
  EXPECT_TRUE(list_dir(nested).empty());
}

TEST(DiskStore, AFileAsOffloadDirIsRefused) {
  TempDir dir;
  const fs::path file = dir.path() / "plain";
  std::ofstream(file) << "x";
  EXPECT_THAT(error_of([&] { DiskStore store(file, kUnlimited); }),
              HasSubstr("offload dir " + file.string() + " is not a directory"));
  EXPECT_THAT(error_of([&] { DiskStore store(file / "sub", kUnlimited); }),
              HasSubstr("cannot create offload dir " + (file / "sub").string()));
}

TEST(DiskStore, ANonWritableOffloadDirIsRefused) {
  if (::geteuid() == 0) GTEST_SKIP() << "root may write to any directory";
  TempDir dir;
  fs::permissions(dir.path(), fs::perms::owner_read | fs::perms::owner_exec);
  EXPECT_THAT(error_of([&] { DiskStore store(dir.path(), kUnlimited); }),
              HasSubstr("offload dir " + dir.path().string() + " is not writable"));
}

TEST(DiskStore, BadOptionsAreRefused) {
  TempDir dir;
  DiskStoreOptions options;
  options.chunk_bytes = 5000;
  EXPECT_THAT(error_of([&] { DiskStore store(dir.path(), kUnlimited, options); }),
              HasSubstr("chunk size 5000 is not a positive multiple of 4096"));
  EXPECT_THAT(error_of([&] { DiskStore store(dir.path(), -1); }),
              HasSubstr("disk budget is negative"));
}

// ---- buffered fallback ------------------------------------------------------------------------

void expect_round_trips(DiskStore& store) {
  std::uint64_t seed = 200;
  for (Bytes size : {Bytes{1}, Bytes{4095}, Bytes{4097}, 3 * kMiB + 7}) {
    const DiskRegion region = store.allocate(size + 1, str_cat("b", size));
    const auto data = random_bytes(static_cast<std::size_t>(size), seed++);
    store.write_sync(region, data.data(), size, 1);
    std::vector<unsigned char> back(static_cast<std::size_t>(size) + 1, 0);
    store.read_sync(region, back.data() + 1, size, 1);
    EXPECT_EQ(std::vector<unsigned char>(back.begin() + 1, back.end()), data) << size;
  }
}

TEST(DiskStore, BufferedFallbackWhenDirectIoIsRefused) {
  FLEXGEN_SKIP_WITHOUT_FAULT_INJECTION();
  FaultGuard guard;
  TempDir dir;
  fault::arm(Point::kDiskEnableDirect, Effect::kFail, 0, EINVAL);
  DiskStore store(dir.path(), kUnlimited);
  EXPECT_FALSE(store.direct_io());
  expect_round_trips(store);
}

TEST(DiskStore, WorksOnTmpfs) {
  const fs::path shm = "/dev/shm";
  std::error_code ec;
  if (!fs::is_directory(shm, ec) || ::access(shm.c_str(), W_OK) != 0) {
    GTEST_SKIP() << "no writable /dev/shm";
  }
  TempDir dir(shm);
  DiskStore store(dir.path(), kUnlimited);
  // tmpfs refuses O_DIRECT before Linux 6.6 and accepts it since; either way the data round trips.
  RecordProperty("direct_io", store.direct_io() ? "true" : "false");
  expect_round_trips(store);
  EXPECT_TRUE(list_dir(dir.path()).empty());
}

}  // namespace
}  // namespace flexgen
