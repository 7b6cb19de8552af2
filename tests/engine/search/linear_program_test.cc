// The GLPK wrapper on problems solved by hand, and its errors.
#include "engine/search/linear_program.h"

#include <cmath>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "engine/core/error.h"

namespace flexgen {
namespace {

using ::testing::HasSubstr;

// minimise -x - 2y  s.t.  x + y <= 4,  x + 3y <= 6,  x, y >= 0.
// Vertices: (0, 0) 0, (4, 0) -4, (0, 2) -4, and x + y = 4 with x + 3y = 6: (3, 1) -5, the optimum.
TEST(LinearProgram, SolvesASmallProblemWorkedByHand) {
  LinearProgram lp;
  const int x = lp.add_column(0, LinearProgram::kInfinity, -1);
  const int y = lp.add_column(0, LinearProgram::kInfinity, -2);
  lp.add_row({{x, 1}, {y, 1}}, -LinearProgram::kInfinity, 4);
  lp.add_row({{x, 1}, {y, 3}}, -LinearProgram::kInfinity, 6);
  const LinearProgram::Solution s = lp.solve();
  ASSERT_TRUE(s.feasible);
  EXPECT_NEAR(s.objective, -5, 1e-9);
  EXPECT_NEAR(s.x[0], 3, 1e-9);
  EXPECT_NEAR(s.x[1], 1, 1e-9);
}

// A max of two lines through the epigraph: minimise t with t >= 1 - x, t >= 2x - 0.5, x in [0, 1]:
// the lines cross at x = 0.5, t = 0.5.
TEST(LinearProgram, MinimisesAMaximumThroughAnEpigraph) {
  LinearProgram lp;
  const int x = lp.add_column(0, 1, 0);
  const int t = lp.add_column(-LinearProgram::kInfinity, LinearProgram::kInfinity, 1);
  lp.add_row({{t, 1}, {x, 1}}, 1, LinearProgram::kInfinity);
  lp.add_row({{t, 1}, {x, -2}}, -0.5, LinearProgram::kInfinity);
  const auto s = lp.solve();
  ASSERT_TRUE(s.feasible);
  EXPECT_NEAR(s.x[0], 0.5, 1e-9);
  EXPECT_NEAR(s.objective, 0.5, 1e-9);
}

TEST(LinearProgram, ReportsInfeasibility) {
  LinearProgram lp;
  const int x = lp.add_column(0, 1, 1);
  lp.add_row({{x, 1}}, 2, LinearProgram::kInfinity);  // x >= 2 but x <= 1
  EXPECT_FALSE(lp.solve().feasible);
  EXPECT_TRUE(lp.solve().x.empty());
}

TEST(LinearProgram, ErrorsNameTheProblem) {
  LinearProgram unbounded;
  unbounded.add_column(0, LinearProgram::kInfinity, -1);
  try {
    unbounded.solve();
    FAIL() << "expected flexgen::Error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("unbounded"));
  }

  LinearProgram lp;
  const int x = lp.add_column(0, 1, 1);
  try {
    lp.add_row({{x, std::nan("")}}, 0, 1);
    FAIL() << "expected flexgen::Error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("non-finite coefficient"));
  }
  try {
    lp.add_column(LinearProgram::kInfinity, LinearProgram::kInfinity, 0);
    FAIL() << "expected flexgen::Error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("invalid bounds"));
  }
  EXPECT_THROW(lp.add_column(0, 1, std::nan("")), Error);
}

}  // namespace
}  // namespace flexgen
