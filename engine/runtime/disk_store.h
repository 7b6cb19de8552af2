#pragma once
// The disk tier of the offloading runtime (FlexGen's third memory tier).
//
// One DiskStore owns one file in the offload directory; every tensor placed on disk gets a region
// of that file (offset and capacity aligned to 4 KiB). Reads and writes are split into chunks
// (4 MiB by default) and executed by a pool of I/O threads, with O_DIRECT where the file system
// supports it and buffered I/O where it does not. Host buffers and sizes need not be aligned: the
// store bounces unaligned chunks through aligned per-thread staging buffers (read-modify-write of
// the partial edge blocks on writes).
//
// Cleanup: the file never has a name in the directory while it is in use. It is created with
// O_TMPFILE (an unnamed inode in the directory's file system) or, where that is not supported,
// created under a unique name and unlinked at once. Its space is therefore returned by the kernel
// whenever the descriptor is closed: at destruction, on error, on exit, on Ctrl-C and even on
// SIGKILL, and no signal handler is needed. The free-space check uses statvfs on the directory.
//
// Budget: allocate() counts region capacities against the byte budget (--disk-mem) and refuses an
// allocation beyond it before any byte is written; reserve() checks the file system's free space
// up front and preallocates the file (fallocate; ftruncate where that is unsupported).
//
// Thread safety: every public function may be called from any thread. Operations on disjoint byte
// ranges may run concurrently, even when they share a 4 KiB block; overlapping writes, or a read
// overlapping a write, must be ordered by the caller. The caller's buffer must stay valid until the
// operation's future is ready; the future becomes ready only after every chunk has finished.
//
// Fault injection (tests only, engine/runtime/fault_injection.h): the disk_write, disk_read,
// disk_open_tmpfile, disk_enable_direct, disk_preallocate and disk_allocate points.
#include <cstddef>
#include <filesystem>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "engine/core/units.h"

namespace flexgen {

class IoPool;

inline constexpr Bytes kDiskAlignment = 4096;  // O_DIRECT offset, length and buffer alignment

// A region of the offload file. A value: allocate() hands it out, release() takes it back.
struct DiskRegion {
  Bytes offset = 0;    // file offset, a multiple of kDiskAlignment
  Bytes size = 0;      // logical size: reads and writes must stay within [0, size)
  Bytes capacity = 0;  // size rounded up to kDiskAlignment; what the budget counts
  std::string label;   // the tensor's name, for messages
};

struct DiskStoreOptions {
  std::size_t io_threads = 4;
  Bytes chunk_bytes = 4 * kMiB;  // transfer unit of one I/O thread; a multiple of kDiskAlignment
};

class DiskStore {
 public:
  // Creates `directory` if missing. Throws flexgen::Error when it is not a directory, cannot be
  // created, is not writable or the offload file cannot be created; `budget` is the --disk-mem
  // limit in bytes.
  DiskStore(std::filesystem::path directory, Bytes budget, DiskStoreOptions options = {});
  ~DiskStore();  // waits for outstanding operations, then closes (and so frees) the file
  DiskStore(const DiskStore&) = delete;
  DiskStore& operator=(const DiskStore&) = delete;

  // Checks up front that the plan's `total` disk bytes fit the budget and the file system's free
  // space, and preallocates the file to that size. Throws flexgen::Error otherwise.
  void reserve(Bytes total);

  // A region of `size` bytes (first fit over released regions, else at the end of the file).
  // Throws flexgen::Error when the budget would be exceeded.
  DiskRegion allocate(Bytes size, std::string label);
  // Returns a region's capacity to the budget; its bytes may be reused by later allocations.
  void release(const DiskRegion& region);

  // Asynchronous transfers of n bytes between a host buffer and bytes
  // [offset_in_region, offset_in_region + n) of `region`. A range outside the region, or a
  // released region, throws flexgen::Error at once; an I/O failure is thrown as flexgen::Error by
  // the future's get().
  std::future<void> write(const DiskRegion& region, const void* src, Bytes n,
                          Bytes offset_in_region = 0);
  std::future<void> read(const DiskRegion& region, void* dst, Bytes n, Bytes offset_in_region = 0);
  void write_sync(const DiskRegion& region, const void* src, Bytes n, Bytes offset_in_region = 0);
  void read_sync(const DiskRegion& region, void* dst, Bytes n, Bytes offset_in_region = 0);

  bool direct_io() const { return direct_io_; }  // false: buffered fallback (e.g. old tmpfs)
  const std::filesystem::path& directory() const { return directory_; }
  // A descriptive name for messages, "<dir>/flexgen-<pid>-<random>.offload". The file has no
  // directory entry (see the top of this header).
  const std::string& file_name() const { return file_name_; }
  Bytes budget() const { return budget_; }
  Bytes used_bytes() const;  // capacities of the live regions
  Bytes peak_bytes() const;  // the most used_bytes() has been
  Bytes file_bytes() const;  // the file's current size

 private:
  enum class Direction { kRead, kWrite };
  struct Operation;
  struct Chunk;

  std::future<void> submit(Direction direction, const DiskRegion& region, char* host, Bytes n,
                           Bytes offset_in_region);
  void run_chunk(std::size_t worker, const Chunk& chunk);
  void transfer_direct(std::size_t worker, const Chunk& chunk);
  void pwrite_all(const Operation& op, const char* src, Bytes n, Bytes file_offset) const;
  void pread_all(const Operation& op, char* dst, Bytes n, Bytes file_offset) const;
  char* staging(std::size_t worker);
  std::string budget_message(Bytes wanted, const std::string& what) const;

  struct AlignedFree {
    void operator()(char* p) const;
  };

  std::filesystem::path directory_;
  Bytes budget_;
  DiskStoreOptions options_;
  std::string file_name_;
  int fd_ = -1;
  bool direct_io_ = false;

  mutable std::mutex alloc_mutex_;     // guards everything below up to edge_locks_
  std::map<Bytes, Bytes> live_;        // offset -> capacity of allocated regions
  std::map<Bytes, Bytes> free_;        // offset -> length of released extents below end_
  Bytes end_ = 0;                      // end of the highest allocated extent
  Bytes file_size_ = 0;                // the file's size as last set by this store
  Bytes used_ = 0;
  Bytes peak_ = 0;

  static constexpr std::size_t kEdgeLockStripes = 64;
  std::unique_ptr<std::mutex[]> edge_locks_;  // serialise read-modify-writes of shared blocks
  std::vector<std::unique_ptr<char, AlignedFree>> staging_;  // one per worker, made on first use
  std::unique_ptr<IoPool> pool_;  // last: its workers use everything above
};

}  // namespace flexgen
