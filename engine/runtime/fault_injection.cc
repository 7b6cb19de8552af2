#include "engine/runtime/fault_injection.h"

#include <array>
#include <iterator>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <vector>

#include "engine/core/error.h"

namespace flexgen::fault {

namespace {

constexpr std::size_t kPoints = static_cast<std::size_t>(Point::kCount);

// By Point; a new point needs its name here (the static_assert counts them).
constexpr const char* kPointNames[] = {
    "disk_write",       "disk_read",     "disk_open_tmpfile", "disk_enable_direct",
    "disk_preallocate", "disk_allocate", "alloc_gpu",         "alloc_cpu",
    "cuda_copy",        "output_write",  "stage_compute",
};
static_assert(std::size(kPointNames) == kPoints, "every fault point needs a name in kPointNames");

struct ErrnoName {
  const char* name;
  int value;
};
constexpr ErrnoName kErrnoNames[] = {
    {"ENOSPC", ENOSPC}, {"EIO", EIO},       {"ENOMEM", ENOMEM}, {"EACCES", EACCES},
    {"EINVAL", EINVAL}, {"EOPNOTSUPP", EOPNOTSUPP}, {"EROFS", EROFS}, {"EDQUOT", EDQUOT},
    {"EFBIG", EFBIG},
};

#if defined(FLEXGEN_FAULT_INJECTION) && FLEXGEN_FAULT_INJECTION
struct Slot {
  std::atomic<bool> armed{false};
  std::atomic<Effect> effect{Effect::kNone};
  std::atomic<std::int64_t> after{0};
  std::atomic<int> error{0};
  std::atomic<std::int64_t> count{0};
};

std::array<Slot, kPoints>& slots() {
  static std::array<Slot, kPoints> all;
  return all;
}

Slot& slot(Point point) { return slots()[static_cast<std::size_t>(point)]; }
#endif

std::vector<std::string_view> split(std::string_view text, char separator) {
  std::vector<std::string_view> parts;
  std::size_t begin = 0;
  for (;;) {
    const std::size_t end = text.find(separator, begin);
    parts.push_back(text.substr(begin, end == std::string_view::npos ? std::string_view::npos : end - begin));
    if (end == std::string_view::npos) return parts;
    begin = end + 1;
  }
}

bool parse_int(std::string_view text, std::int64_t& out) {
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, out);
  return ec == std::errc() && ptr == end && !text.empty();
}

}  // namespace

const char* point_name(Point point) {
  const auto i = static_cast<std::size_t>(point);
  return i < kPoints ? kPointNames[i] : "?";
}

const char* effect_name(Effect effect) {
  switch (effect) {
    case Effect::kNone: return "none";
    case Effect::kFail: return "fail";
    case Effect::kShort: return "short";
    case Effect::kStall: return "stall";
  }
  return "?";
}

bool supports(Point point, Effect effect) {
  switch (effect) {
    case Effect::kNone:
    case Effect::kFail: return point != Point::kCount;
    case Effect::kShort:
      return point == Point::kDiskWrite || point == Point::kDiskRead || point == Point::kOutputWrite;
    case Effect::kStall: return point == Point::kDiskWrite;
  }
  return false;
}

#if defined(FLEXGEN_FAULT_INJECTION) && FLEXGEN_FAULT_INJECTION

Effect strike(Point point) {
  Slot& s = slot(point);
  if (!s.armed.load(std::memory_order_acquire)) return Effect::kNone;
  const std::int64_t n = s.count.fetch_add(1, std::memory_order_relaxed);
  const std::int64_t after = s.after.load(std::memory_order_relaxed);
  const Effect effect = s.effect.load(std::memory_order_relaxed);
  if (n == after || (effect == Effect::kStall && n > after)) {
    if (effect == Effect::kFail || effect == Effect::kStall) errno = s.error.load(std::memory_order_relaxed);
    return effect;
  }
  return Effect::kNone;
}

void arm(Point point, Effect effect, std::int64_t after, int error) {
  FLEXGEN_REQUIRE(point != Point::kCount, "fault injection: no such point");
  FLEXGEN_REQUIRE(supports(point, effect), "fault injection: point ", point_name(point), " cannot ",
                  effect_name(effect), " (it supports fail", supports(point, Effect::kShort) ? ", short" : "",
                  supports(point, Effect::kStall) ? ", stall" : "", ")");
  FLEXGEN_REQUIRE(after >= 0, "fault injection: the call to strike must not be negative (got ", after, ")");
  Slot& s = slot(point);
  s.armed.store(false, std::memory_order_release);
  s.effect.store(effect, std::memory_order_relaxed);
  s.after.store(after, std::memory_order_relaxed);
  s.error.store(error, std::memory_order_relaxed);
  s.count.store(0, std::memory_order_relaxed);
  s.armed.store(true, std::memory_order_release);
}

void disarm(Point point) {
  if (point != Point::kCount) slot(point).armed.store(false, std::memory_order_release);
}

void disarm_all() {
  for (Slot& s : slots()) s.armed.store(false, std::memory_order_release);
}

std::int64_t calls(Point point) {
  return point == Point::kCount ? 0 : slot(point).count.load(std::memory_order_relaxed);
}

#else

void arm(Point, Effect, std::int64_t, int) {
  fail("fault injection is not compiled into this build (configure with -DFLEXGEN_FAULT_INJECTION=ON)");
}
void disarm(Point) {}
void disarm_all() {}
std::int64_t calls(Point) { return 0; }

#endif

void arm_from_spec(std::string_view spec) {
  for (std::string_view item : split(spec, ',')) {
    const std::vector<std::string_view> fields = split(item, ':');
    FLEXGEN_REQUIRE(fields.size() >= 2 && fields.size() <= 4, "FLEXGEN_FAULT: '", item,
                    "' is not POINT:EFFECT[:AFTER[:ERRNO]]");
    Point point = Point::kCount;
    for (std::size_t i = 0; i < kPoints; ++i) {
      if (fields[0] == kPointNames[i]) point = static_cast<Point>(i);
    }
    if (point == Point::kCount) {
      std::string known;
      for (const char* name : kPointNames) known += str_cat(known.empty() ? "" : ", ", name);
      fail("FLEXGEN_FAULT: unknown point '", fields[0], "' (known: ", known, ")");
    }
    Effect effect = Effect::kNone;
    for (Effect e : {Effect::kFail, Effect::kShort, Effect::kStall}) {
      if (fields[1] == effect_name(e)) effect = e;
    }
    FLEXGEN_REQUIRE(effect != Effect::kNone, "FLEXGEN_FAULT: unknown effect '", fields[1],
                    "' in '", item, "' (fail, short or stall)");
    std::int64_t after = 0;
    if (fields.size() >= 3) {
      FLEXGEN_REQUIRE(parse_int(fields[2], after) && after >= 0, "FLEXGEN_FAULT: '", fields[2], "' in '",
                      item, "' is not a call number (0 for the next call)");
    }
    int error = EIO;
    if (fields.size() == 4) {
      std::int64_t number = 0;
      bool known = false;
      for (const ErrnoName& e : kErrnoNames) {
        if (fields[3] == e.name) {
          error = e.value;
          known = true;
        }
      }
      if (!known) {
        FLEXGEN_REQUIRE(parse_int(fields[3], number) && number > 0 && number < 4096, "FLEXGEN_FAULT: unknown errno '",
                        fields[3], "' in '", item, "'");
        error = static_cast<int>(number);
      }
    }
    arm(point, effect, after, error);
  }
}

void arm_from_environment() {
  const char* spec = std::getenv("FLEXGEN_FAULT");
  if (spec == nullptr || *spec == '\0') return;
  FLEXGEN_REQUIRE(kCompiledIn, "FLEXGEN_FAULT is set, but this build has no fault injection "
                  "(configure with -DFLEXGEN_FAULT_INJECTION=ON)");
  arm_from_spec(spec);
}

}  // namespace flexgen::fault
