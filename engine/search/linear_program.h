#pragma once
// A small linear program solved with GLPK's simplex (terminal output off): minimise c'x subject to
// row bounds l <= Ax <= u and column bounds. Built row by row, solved once.
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

namespace flexgen {

class LinearProgram {
 public:
  static constexpr double kInfinity = std::numeric_limits<double>::infinity();

  // Adds a column with bounds [lower, upper] (either may be infinite) and objective coefficient
  // `cost`; returns its index.
  int add_column(double lower, double upper, double cost);
  // Adds a row lower <= sum coefficient * x[column] <= upper (either bound may be infinite).
  void add_row(const std::vector<std::pair<int, double>>& terms, double lower, double upper);

  int num_columns() const { return static_cast<int>(columns_.size()); }
  int num_rows() const { return static_cast<int>(rows_.size()); }

  struct Solution {
    bool feasible = false;   // false: no point satisfies the constraints
    double objective = 0;
    std::vector<double> x;   // by column (empty when infeasible)
  };
  // Throws flexgen::Error for a non-finite coefficient, an unbounded problem or a GLPK failure.
  Solution solve() const;

 private:
  struct Column {
    double lower, upper, cost;
  };
  struct Row {
    std::vector<std::pair<int, double>> terms;
    double lower, upper;
  };
  std::vector<Column> columns_;
  std::vector<Row> rows_;
};

}  // namespace flexgen
