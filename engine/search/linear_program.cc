#include "engine/search/linear_program.h"

#include <glpk.h>

#include <cassert>
#include <cmath>

#include "engine/core/error.h"

namespace flexgen {
namespace {

// GLPK's bound type for a pair of bounds, infinite meaning none.
int bound_type(double lower, double upper) {
  const bool has_lower = std::isfinite(lower);
  const bool has_upper = std::isfinite(upper);
  if (has_lower && has_upper) return lower == upper ? GLP_FX : GLP_DB;
  if (has_lower) return GLP_LO;
  if (has_upper) return GLP_UP;
  return GLP_FR;
}

double finite_or_zero(double v) { return std::isfinite(v) ? v : 0.0; }

void check_bounds(double lower, double upper, const char* what, int index) {
  FLEXGEN_REQUIRE(!std::isnan(lower) && !std::isnan(upper) && lower != LinearProgram::kInfinity &&
                      upper != -LinearProgram::kInfinity,
                  "linear program: ", what, " ", index, " has invalid bounds [", lower, ", ", upper, "]");
}

}  // namespace

struct LinearProgram::Glpk {
  glp_prob* problem = nullptr;
  int columns = 0;
  std::vector<std::vector<int>> row_columns;  // the pattern of every row
  ~Glpk() {
    if (problem) glp_delete_prob(problem);
  }
};

LinearProgram::LinearProgram() = default;
LinearProgram::~LinearProgram() = default;
LinearProgram::LinearProgram(LinearProgram&&) noexcept = default;
LinearProgram& LinearProgram::operator=(LinearProgram&&) noexcept = default;

int LinearProgram::add_column(double lower, double upper, double cost) {
  check_bounds(lower, upper, "column", num_columns());
  FLEXGEN_REQUIRE(std::isfinite(cost), "linear program: column ", num_columns(), " has a non-finite cost ", cost);
  columns_.push_back({lower, upper, cost});
  return num_columns() - 1;
}

void LinearProgram::add_row(const std::vector<std::pair<int, double>>& terms, double lower, double upper) {
  check_bounds(lower, upper, "row", num_rows());
  for (const auto& [column, coefficient] : terms) {
    assert(column >= 0 && column < num_columns());
    FLEXGEN_REQUIRE(std::isfinite(coefficient), "linear program: row ", num_rows(), " has a non-finite coefficient ",
                    coefficient, " for column ", column);
  }
  rows_.push_back({terms, lower, upper});
}

void LinearProgram::clear() {
  columns_.clear();
  rows_.clear();
}

bool LinearProgram::same_structure() const {
  if (!glpk_ || glpk_->columns != num_columns() || glpk_->row_columns.size() != rows_.size()) return false;
  for (std::size_t i = 0; i < rows_.size(); ++i) {
    const std::vector<int>& pattern = glpk_->row_columns[i];
    if (pattern.size() != rows_[i].terms.size()) return false;
    for (std::size_t t = 0; t < pattern.size(); ++t) {
      if (pattern[t] != rows_[i].terms[t].first) return false;
    }
  }
  return true;
}

void LinearProgram::load() {
  glpk_ = std::make_unique<Glpk>();
  glpk_->problem = glp_create_prob();
  glpk_->columns = num_columns();
  glp_prob* lp = glpk_->problem;
  glp_set_obj_dir(lp, GLP_MIN);
  if (!columns_.empty()) glp_add_cols(lp, num_columns());
  if (!rows_.empty()) glp_add_rows(lp, num_rows());
  // GLPK's arrays are 1-based; element 0 is unused.
  std::vector<int> ia(1, 0), ja(1, 0);
  std::vector<double> ar(1, 0.0);
  for (int i = 0; i < num_rows(); ++i) {
    std::vector<int> pattern;
    for (const auto& [column, coefficient] : rows_[static_cast<std::size_t>(i)].terms) {
      pattern.push_back(column);
      ia.push_back(i + 1);
      ja.push_back(column + 1);
      ar.push_back(coefficient);
    }
    glpk_->row_columns.push_back(std::move(pattern));
  }
  glp_load_matrix(lp, static_cast<int>(ia.size()) - 1, ia.data(), ja.data(), ar.data());
  update();
}

void LinearProgram::update() {
  glp_prob* lp = glpk_->problem;
  for (int j = 0; j < num_columns(); ++j) {
    const Column& c = columns_[static_cast<std::size_t>(j)];
    glp_set_col_bnds(lp, j + 1, bound_type(c.lower, c.upper), finite_or_zero(c.lower), finite_or_zero(c.upper));
    glp_set_obj_coef(lp, j + 1, c.cost);
  }
  std::vector<int> index(1, 0);
  std::vector<double> value(1, 0.0);
  for (int i = 0; i < num_rows(); ++i) {
    const Row& r = rows_[static_cast<std::size_t>(i)];
    glp_set_row_bnds(lp, i + 1, bound_type(r.lower, r.upper), finite_or_zero(r.lower), finite_or_zero(r.upper));
    index.resize(1);
    value.resize(1);
    for (const auto& [column, coefficient] : r.terms) {
      index.push_back(column + 1);
      value.push_back(coefficient);
    }
    glp_set_mat_row(lp, i + 1, static_cast<int>(r.terms.size()), index.data(), value.data());
  }
}

LinearProgram::Solution LinearProgram::solve() {
  glp_term_out(GLP_OFF);
  const bool warm = same_structure();
  if (warm) {
    update();
  } else {
    load();
  }
  glp_prob* lp = glpk_->problem;
  if (!warm) glp_scale_prob(lp, GLP_SF_AUTO);  // a warm start keeps the scale factors
  glp_smcp parm;
  glp_init_smcp(&parm);
  parm.msg_lev = GLP_MSG_OFF;
  parm.meth = GLP_DUALP;  // dual simplex, falling back to the primal
  int rc = glp_simplex(lp, &parm);
  if (rc != 0) {
    // A bad warm basis or a numerical failure: once more with the primal simplex from scratch.
    glp_std_basis(lp);
    parm.meth = GLP_PRIMAL;
    rc = glp_simplex(lp, &parm);
  }
  if (rc != 0) glpk_.reset();
  FLEXGEN_REQUIRE(rc == 0, "GLPK simplex failed (return code ", rc, ") on a linear program with ", num_columns(),
                  " columns and ", num_rows(), " rows");
  Solution s;
  const int status = glp_get_status(lp);
  if (status == GLP_NOFEAS || status == GLP_INFEAS) return s;
  FLEXGEN_REQUIRE(status != GLP_UNBND, "GLPK: the linear program is unbounded");
  FLEXGEN_REQUIRE(status == GLP_OPT, "GLPK simplex ended without an optimum (status ", status, ")");
  s.feasible = true;
  s.objective = glp_get_obj_val(lp);
  s.x.resize(static_cast<std::size_t>(num_columns()));
  for (int j = 0; j < num_columns(); ++j) s.x[static_cast<std::size_t>(j)] = glp_get_col_prim(lp, j + 1);
  return s;
}

}  // namespace flexgen
