#pragma once
// A small linear program solved with GLPK's simplex (terminal output off): minimise c'x subject to
// row bounds l <= Ax <= u and column bounds. Built row by row and solved. An object that is
// cleared and rebuilt with the same structure (the same columns and the same columns in every
// row; only coefficients, bounds and costs changed) re-solves from its previous optimal basis,
// which takes a handful of simplex iterations instead of dozens (the policy search solves long
// runs of such LPs).
#include <cstdint>
#include <limits>
#include <memory>
#include <utility>
#include <vector>

namespace flexgen {

class LinearProgram {
 public:
  static constexpr double kInfinity = std::numeric_limits<double>::infinity();

  LinearProgram();
  ~LinearProgram();
  LinearProgram(const LinearProgram&) = delete;
  LinearProgram& operator=(const LinearProgram&) = delete;
  LinearProgram(LinearProgram&&) noexcept;
  LinearProgram& operator=(LinearProgram&&) noexcept;

  // Adds a column with bounds [lower, upper] (either may be infinite) and objective coefficient
  // `cost`; returns its index.
  int add_column(double lower, double upper, double cost);
  // Adds a row lower <= sum coefficient * x[column] <= upper (either bound may be infinite).
  void add_row(const std::vector<std::pair<int, double>>& terms, double lower, double upper);
  // Forgets the columns and rows (keeping the last solved problem for a warm start).
  void clear();

  int num_columns() const { return static_cast<int>(columns_.size()); }
  int num_rows() const { return static_cast<int>(rows_.size()); }

  struct Solution {
    bool feasible = false;   // false: no point satisfies the constraints
    double objective = 0;
    std::vector<double> x;   // by column (empty when infeasible)
  };
  // Throws flexgen::Error for a non-finite coefficient, an unbounded problem or a GLPK failure.
  Solution solve();

 private:
  struct Column {
    double lower, upper, cost;
  };
  struct Row {
    std::vector<std::pair<int, double>> terms;
    double lower, upper;
  };
  bool same_structure() const;  // the columns and row patterns of the last solved problem
  void load();                  // the whole problem into a fresh GLPK object
  void update();                // new values into the kept GLPK object

  std::vector<Column> columns_;
  std::vector<Row> rows_;
  struct Glpk;
  std::unique_ptr<Glpk> glpk_;  // the last solved problem, and its structure
};

}  // namespace flexgen
