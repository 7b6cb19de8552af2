#pragma once
// Recoverable errors (bad input files, impossible policies, budgets that do not fit) are thrown as
// flexgen::Error and reported by the command-line front end as one line and a non-zero exit.
// Programming errors are asserts.
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace flexgen {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Concatenates anything printable with operator<< into one string.
template <typename... Args>
std::string str_cat(Args&&... args) {
  std::ostringstream out;
  (out << ... << std::forward<Args>(args));
  return out.str();
}

// Throws flexgen::Error with the concatenated message.
template <typename... Args>
[[noreturn]] void fail(Args&&... args) {
  throw Error(str_cat(std::forward<Args>(args)...));
}

}  // namespace flexgen

// Checks a condition on user input; on failure throws flexgen::Error with the streamed message.
#define FLEXGEN_REQUIRE(cond, ...)                    \
  do {                                                \
    if (!(cond)) ::flexgen::fail(__VA_ARGS__);        \
  } while (0)
