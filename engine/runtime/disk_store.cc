#include "engine/runtime/disk_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cassert>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <iterator>
#include <random>
#include <system_error>
#include <utility>

#include "engine/core/error.h"
#include "engine/core/format.h"
#include "engine/runtime/fault_injection.h"
#include "engine/runtime/io_pool.h"

namespace flexgen {

namespace {

using fault::Effect;
using fault::Point;

std::string errno_text(int error) { return std::generic_category().message(error); }

Bytes round_down(Bytes x) { return x / kDiskAlignment * kDiskAlignment; }
Bytes round_up(Bytes x) { return round_down(x + kDiskAlignment - 1); }
bool aligned(const void* p) {
  return reinterpret_cast<std::uintptr_t>(p) % static_cast<std::uintptr_t>(kDiskAlignment) == 0;
}

// A shortened length for an injected short transfer: half, kept block-aligned under O_DIRECT.
std::size_t shortened(std::size_t n, bool direct) {
  Bytes half = static_cast<Bytes>(n / 2);
  if (direct) half = round_down(half);
  return half > 0 ? static_cast<std::size_t>(half) : n;
}

ssize_t sys_pwrite(int fd, const char* src, std::size_t n, Bytes offset, bool direct) {
  switch (fault::strike(Point::kDiskWrite)) {
    case Effect::kFail: return -1;
    case Effect::kStall: return 0;
    case Effect::kShort: n = shortened(n, direct); break;
    case Effect::kNone: break;
  }
  return ::pwrite(fd, src, n, static_cast<off_t>(offset));
}

ssize_t sys_pread(int fd, char* dst, std::size_t n, Bytes offset, bool direct) {
  switch (fault::strike(Point::kDiskRead)) {
    case Effect::kFail: return -1;
    case Effect::kShort: n = shortened(n, direct); break;
    case Effect::kStall:
    case Effect::kNone: break;
  }
  return ::pread(fd, dst, n, static_cast<off_t>(offset));
}

std::string random_hex() {
  std::random_device device;
  const std::uint64_t value = (static_cast<std::uint64_t>(device()) << 32) ^ device();
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string text(12, '0');
  for (std::size_t i = 0; i < text.size(); ++i) text[i] = kDigits[(value >> (4 * i)) & 0xf];
  return text;
}

void prepare_directory(const std::filesystem::path& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::file_status status = fs::status(dir, ec);
  if (status.type() == fs::file_type::not_found) {
    if (!fs::create_directories(dir, ec) && ec) {
      fail("disk tier: cannot create offload dir ", dir.string(), ": ", ec.message());
    }
  } else if (ec) {
    fail("disk tier: cannot access offload dir ", dir.string(), ": ", ec.message());
  } else if (!fs::is_directory(status)) {
    fail("disk tier: offload dir ", dir.string(), " is not a directory");
  }
  if (::access(dir.c_str(), W_OK | X_OK) != 0) {
    fail("disk tier: offload dir ", dir.string(), " is not writable: ", errno_text(errno));
  }
}

// Opens a file with no directory entry in `dir`: O_TMPFILE, else a unique name unlinked at once.
int open_unnamed(const std::filesystem::path& dir, const std::string& name) {
  int fd = -1;
  if (fault::strike(Point::kDiskOpenTmpfile) == Effect::kNone) {
    fd = ::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  }
  if (fd >= 0) return fd;
  if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL) {
    fail("disk tier: cannot create an offload file in ", dir.string(), ": ", errno_text(errno));
  }
  fd = ::open(name.c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600);
  if (fd < 0) fail("disk tier: cannot create offload file ", name, ": ", errno_text(errno));
  if (::unlink(name.c_str()) != 0) {
    const int error = errno;
    ::close(fd);
    fail("disk tier: cannot unlink offload file ", name, ": ", errno_text(error));
  }
  return fd;
}

// Switches the descriptor to O_DIRECT; false when the file system refuses it.
bool enable_direct(int fd) {
  if (fault::strike(Point::kDiskEnableDirect) != Effect::kNone) return false;
  const int flags = ::fcntl(fd, F_GETFL);
  return flags >= 0 && ::fcntl(fd, F_SETFL, flags | O_DIRECT) == 0;
}

}  // namespace

// ---- operations and chunks --------------------------------------------------------------------

struct DiskStore::Operation {
  Direction direction;
  std::string label;
  Bytes total;             // bytes of the whole operation
  Bytes offset_in_region;
  std::atomic<std::size_t> pending{0};
  std::mutex error_mutex;
  std::string error;       // the first chunk failure
  std::promise<void> done;

  void record(const std::string& message) {
    std::lock_guard lock(error_mutex);
    if (error.empty()) error = message;
  }
  void chunk_finished() {
    if (pending.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
    if (error.empty()) {
      done.set_value();
    } else {
      done.set_exception(std::make_exception_ptr(Error(error)));
    }
  }
};

struct DiskStore::Chunk {
  std::shared_ptr<Operation> op;
  Bytes file_begin;  // [file_begin, file_end) of the file
  Bytes file_end;
  char* host;        // the host bytes matching file_begin
};

void DiskStore::AlignedFree::operator()(char* p) const { std::free(p); }

DiskStore::DiskStore(std::filesystem::path directory, Bytes budget, DiskStoreOptions options)
    : directory_(std::move(directory)), budget_(budget), options_(options) {
  FLEXGEN_REQUIRE(budget_ >= 0, "disk tier: the disk budget is negative (", budget_, " bytes)");
  FLEXGEN_REQUIRE(options_.io_threads >= 1, "disk tier: needs at least one I/O thread");
  FLEXGEN_REQUIRE(options_.chunk_bytes > 0 && options_.chunk_bytes % kDiskAlignment == 0,
                  "disk tier: the I/O chunk size ", options_.chunk_bytes,
                  " is not a positive multiple of ", kDiskAlignment);
  prepare_directory(directory_);
  file_name_ = (directory_ / str_cat("flexgen-", ::getpid(), "-", random_hex(), ".offload")).string();
  fd_ = open_unnamed(directory_, file_name_);
  direct_io_ = enable_direct(fd_);
  try {
    edge_locks_ = std::make_unique<std::mutex[]>(kEdgeLockStripes);
    staging_.resize(options_.io_threads);
    pool_ = std::make_unique<IoPool>(options_.io_threads);
  } catch (...) {
    ::close(fd_);
    throw;
  }
}

DiskStore::~DiskStore() {
  pool_->shutdown();
  ::close(fd_);
}

Bytes DiskStore::used_bytes() const {
  std::lock_guard lock(alloc_mutex_);
  return used_;
}

Bytes DiskStore::peak_bytes() const {
  std::lock_guard lock(alloc_mutex_);
  return peak_;
}

Bytes DiskStore::file_bytes() const {
  struct stat st {};
  if (::fstat(fd_, &st) != 0) fail("disk tier: cannot stat ", file_name_, ": ", errno_text(errno));
  return static_cast<Bytes>(st.st_size);
}

std::string DiskStore::budget_message(Bytes wanted, const std::string& what) const {
  return str_cat("disk tier: plan needs ", format_bytes(wanted - budget_), " more than --disk-mem ",
                 format_bytes(budget_), " allows (", what, ")");
}

// ---- space ------------------------------------------------------------------------------------

void DiskStore::reserve(Bytes total) {
  FLEXGEN_REQUIRE(total >= 0, "disk tier: cannot reserve a negative size (", total, " bytes)");
  std::lock_guard lock(alloc_mutex_);
  if (total > budget_) {
    throw Error(budget_message(total, str_cat("reserving ", format_bytes(total))));
  }
  total = round_up(total);
  struct stat st {};
  if (::fstat(fd_, &st) != 0) fail("disk tier: cannot stat ", file_name_, ": ", errno_text(errno));
  const Bytes allocated = static_cast<Bytes>(st.st_blocks) * 512;
  const Bytes needed = std::max<Bytes>(0, total - allocated);
  struct statvfs fs {};
  if (::statvfs(directory_.c_str(), &fs) != 0) {
    fail("disk tier: cannot query free space of offload dir ", directory_.string(), ": ",
         errno_text(errno));
  }
  const Bytes free_bytes = static_cast<Bytes>(fs.f_bavail) * static_cast<Bytes>(fs.f_frsize);
  if (needed > free_bytes) {
    fail("disk tier: offload dir ", directory_.string(), " has ", format_bytes(free_bytes),
         " free, the plan needs ", format_bytes(needed),
         "; free space there, choose another --offload-dir, or keep more in memory (--percent)");
  }
  if (needed == 0 && total <= file_size_) return;

  int result = 0;
  if (fault::strike(Point::kDiskPreallocate) != Effect::kNone) {
    result = -1;
  } else {
    result = ::fallocate(fd_, 0, 0, static_cast<off_t>(total));
  }
  if (result != 0 && errno == EOPNOTSUPP) {
    // No preallocation on this file system: only make the file as long as the plan.
    result = total > file_size_ ? ::ftruncate(fd_, static_cast<off_t>(total)) : 0;
  }
  if (result != 0) {
    const int error = errno;
    // Give back whatever a partial preallocation took beyond the old size.
    if (::ftruncate(fd_, static_cast<off_t>(file_size_)) != 0) { /* the message below stands */ }
    fail("disk tier: cannot preallocate ", format_bytes(total), " in offload dir ",
         directory_.string(), ": ", errno_text(error));
  }
  file_size_ = std::max(file_size_, total);
}

DiskRegion DiskStore::allocate(Bytes size, std::string label) {
  FLEXGEN_REQUIRE(size >= 0, "disk tier: region '", label, "' has a negative size (", size,
                  " bytes)");
  DiskRegion region;
  region.size = size;
  region.capacity = round_up(size);
  region.label = std::move(label);

  std::lock_guard lock(alloc_mutex_);
  if (used_ + region.capacity > budget_) {
    throw Error(budget_message(
        used_ + region.capacity,
        str_cat("region '", region.label, "' of ", format_bytes(region.capacity), ", ",
                format_bytes(used_), " already in use")));
  }
  if (region.capacity == 0) return region;
  if (fault::strike(Point::kDiskAllocate) == Effect::kFail) {
    fail("disk tier: cannot allocate ", format_bytes(region.capacity), " for region '", region.label,
         "' in offload file ", file_name_, ": ", errno_text(errno));
  }

  // First fit over released extents, else at the end.
  auto fit = std::find_if(free_.begin(), free_.end(),
                          [&](const auto& extent) { return extent.second >= region.capacity; });
  if (fit != free_.end()) {
    region.offset = fit->first;
    const Bytes rest = fit->second - region.capacity;
    free_.erase(fit);
    if (rest > 0) free_.emplace(region.offset + region.capacity, rest);
  } else {
    region.offset = end_;
    const Bytes new_end = end_ + region.capacity;
    if (new_end > file_size_) {
      // Sparse extension, so that reads of never-written bytes return zeros, not end of file.
      if (::ftruncate(fd_, static_cast<off_t>(new_end)) != 0) {
        fail("disk tier: cannot grow offload file ", file_name_, " to ", format_bytes(new_end),
             " for region '", region.label, "': ", errno_text(errno));
      }
      file_size_ = new_end;
    }
    end_ = new_end;
  }
  live_.emplace(region.offset, region.capacity);
  used_ += region.capacity;
  peak_ = std::max(peak_, used_);
  return region;
}

void DiskStore::release(const DiskRegion& region) {
  if (region.capacity == 0) return;
  std::lock_guard lock(alloc_mutex_);
  const auto live = live_.find(region.offset);
  assert(live != live_.end() && live->second == region.capacity && "release of a dead region");
  if (live == live_.end() || live->second != region.capacity) return;
  live_.erase(live);
  used_ -= region.capacity;

  Bytes begin = region.offset;
  Bytes end = region.offset + region.capacity;
  // Coalesce with the free neighbours.
  auto next = free_.lower_bound(begin);
  if (next != free_.end() && next->first == end) {
    end += next->second;
    next = free_.erase(next);
  }
  if (next != free_.begin()) {
    const auto prev = std::prev(next);
    if (prev->first + prev->second == begin) {
      begin = prev->first;
      free_.erase(prev);
    }
  }
  if (end == end_) {
    end_ = begin;  // the tail is free again: the next bump allocation reuses it
  } else {
    free_.emplace(begin, end - begin);
  }
}

// ---- I/O --------------------------------------------------------------------------------------

std::future<void> DiskStore::write(const DiskRegion& region, const void* src, Bytes n,
                                   Bytes offset_in_region) {
  // The pointer is only read from on the write path.
  return submit(Direction::kWrite, region, const_cast<char*>(static_cast<const char*>(src)), n,
                offset_in_region);
}

std::future<void> DiskStore::read(const DiskRegion& region, void* dst, Bytes n,
                                  Bytes offset_in_region) {
  return submit(Direction::kRead, region, static_cast<char*>(dst), n, offset_in_region);
}

void DiskStore::write_sync(const DiskRegion& region, const void* src, Bytes n,
                           Bytes offset_in_region) {
  write(region, src, n, offset_in_region).get();
}

void DiskStore::read_sync(const DiskRegion& region, void* dst, Bytes n, Bytes offset_in_region) {
  read(region, dst, n, offset_in_region).get();
}

std::future<void> DiskStore::submit(Direction direction, const DiskRegion& region, char* host,
                                    Bytes n, Bytes offset_in_region) {
  const char* verb = direction == Direction::kWrite ? "write" : "read";
  FLEXGEN_REQUIRE(n >= 0 && offset_in_region >= 0 && offset_in_region <= region.size - n,
                  "disk tier: ", verb, " of ", n, " bytes at offset ", offset_in_region,
                  " is outside region '", region.label, "' of ", region.size, " bytes");
  if (n == 0) {
    std::promise<void> ready;
    ready.set_value();
    return ready.get_future();
  }
  assert(host != nullptr);
  {
    std::lock_guard lock(alloc_mutex_);
    const auto live = live_.find(region.offset);
    FLEXGEN_REQUIRE(live != live_.end() && live->second == region.capacity, "disk tier: ", verb,
                    " to region '", region.label, "', which is not allocated");
  }

  auto op = std::make_shared<Operation>();
  op->direction = direction;
  op->label = region.label;
  op->total = n;
  op->offset_in_region = offset_in_region;

  // Chunks end on multiples of chunk_bytes in file offsets, so that no two chunks of one
  // operation share a block.
  const Bytes begin = region.offset + offset_in_region;
  const Bytes end = begin + n;
  std::vector<IoPool::Task> tasks;
  tasks.reserve(static_cast<std::size_t>((n + options_.chunk_bytes - 1) / options_.chunk_bytes + 1));
  for (Bytes at = begin; at < end;) {
    const Bytes next = std::min(end, (at / options_.chunk_bytes + 1) * options_.chunk_bytes);
    tasks.emplace_back([this, chunk = Chunk{op, at, next, host + (at - begin)}](std::size_t w) {
      run_chunk(w, chunk);
    });
    at = next;
  }
  op->pending.store(tasks.size());
  std::future<void> future = op->done.get_future();
  pool_->submit(std::move(tasks));
  return future;
}

void DiskStore::run_chunk(std::size_t worker, const Chunk& chunk) {
  try {
    const Bytes n = chunk.file_end - chunk.file_begin;
    if (!direct_io_) {
      if (chunk.op->direction == Direction::kWrite) {
        pwrite_all(*chunk.op, chunk.host, n, chunk.file_begin);
      } else {
        pread_all(*chunk.op, chunk.host, n, chunk.file_begin);
      }
    } else {
      transfer_direct(worker, chunk);
    }
  } catch (const std::exception& e) {
    chunk.op->record(e.what());
  }
  chunk.op->chunk_finished();
}

void DiskStore::transfer_direct(std::size_t worker, const Chunk& chunk) {
  const Operation& op = *chunk.op;
  const Bytes n = chunk.file_end - chunk.file_begin;
  const Bytes begin = round_down(chunk.file_begin);
  const Bytes end = round_up(chunk.file_end);  // within the region's capacity
  if (begin == chunk.file_begin && end == chunk.file_end && aligned(chunk.host)) {
    if (op.direction == Direction::kWrite) {
      pwrite_all(op, chunk.host, n, begin);
    } else {
      pread_all(op, chunk.host, n, begin);
    }
    return;
  }

  char* buffer = staging(worker);
  const Bytes skip = chunk.file_begin - begin;
  if (op.direction == Direction::kRead) {
    pread_all(op, buffer, end - begin, begin);
    std::memcpy(chunk.host, buffer + skip, static_cast<std::size_t>(n));  // only the asked bytes
    return;
  }

  // Write: the partial edge blocks are read, patched and written back whole. Other operations may
  // own the rest of those blocks, so their read-modify-writes are serialised by a striped lock.
  const bool head_partial = begin != chunk.file_begin;
  const bool tail_partial = end != chunk.file_end;
  std::unique_lock<std::mutex> first_lock;
  std::unique_lock<std::mutex> second_lock;
  if (head_partial || tail_partial) {
    std::size_t a = static_cast<std::size_t>(begin / kDiskAlignment) % kEdgeLockStripes;
    std::size_t b = static_cast<std::size_t>((end - kDiskAlignment) / kDiskAlignment) %
                    kEdgeLockStripes;
    if (!head_partial) a = b;
    if (!tail_partial) b = a;
    if (a > b) std::swap(a, b);
    first_lock = std::unique_lock(edge_locks_[a]);
    if (b != a) second_lock = std::unique_lock(edge_locks_[b]);
  }
  if (head_partial) pread_all(op, buffer, kDiskAlignment, begin);
  if (tail_partial && (!head_partial || end - begin > kDiskAlignment)) {
    pread_all(op, buffer + (end - begin - kDiskAlignment), kDiskAlignment, end - kDiskAlignment);
  }
  std::memcpy(buffer + skip, chunk.host, static_cast<std::size_t>(n));
  pwrite_all(op, buffer, end - begin, begin);
}

char* DiskStore::staging(std::size_t worker) {
  auto& slot = staging_[worker];  // only this worker touches its slot
  if (!slot) {
    void* memory = nullptr;
    if (::posix_memalign(&memory, static_cast<std::size_t>(kDiskAlignment),
                         static_cast<std::size_t>(options_.chunk_bytes)) != 0) {
      fail("disk tier: cannot allocate a ", format_bytes(options_.chunk_bytes),
           " staging buffer");
    }
    slot.reset(static_cast<char*>(memory));
  }
  return slot.get();
}

void DiskStore::pwrite_all(const Operation& op, const char* src, Bytes n, Bytes file_offset) const {
  Bytes done = 0;
  while (done < n) {
    const ssize_t written = sys_pwrite(fd_, src + done, static_cast<std::size_t>(n - done),
                                       file_offset + done, direct_io_);
    if (written < 0 && errno == EINTR) continue;
    if (written <= 0) {
      const std::string reason = written < 0 ? errno_text(errno)
                                             : errno_text(ENOSPC) + " (the write made no progress)";
      fail("disk tier: write of ", op.total, " bytes (region '", op.label, "', offset ",
           op.offset_in_region, ") to ", file_name_, " failed: ", reason);
    }
    done += static_cast<Bytes>(written);
  }
}

void DiskStore::pread_all(const Operation& op, char* dst, Bytes n, Bytes file_offset) const {
  Bytes done = 0;
  while (done < n) {
    const ssize_t got = sys_pread(fd_, dst + done, static_cast<std::size_t>(n - done),
                                  file_offset + done, direct_io_);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) {
      const std::string reason = got < 0 ? errno_text(errno) : std::string("unexpected end of file");
      const char* what = op.direction == Direction::kRead ? "read" : "read-modify-write";
      fail("disk tier: ", what, " of ", op.total, " bytes (region '", op.label, "', offset ",
           op.offset_in_region, ") from ", file_name_, " failed: ", reason);
    }
    done += static_cast<Bytes>(got);
  }
}

}  // namespace flexgen
