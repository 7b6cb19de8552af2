#include "engine/search/linear_program.h"

#include <glpk.h>

#include <cassert>
#include <cmath>
#include <memory>

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

void check_bounds(double lower, double upper, const char* what, int index) {
  FLEXGEN_REQUIRE(!std::isnan(lower) && !std::isnan(upper) && lower != LinearProgram::kInfinity &&
                      upper != -LinearProgram::kInfinity,
                  "linear program: ", what, " ", index, " has invalid bounds [", lower, ", ", upper, "]");
}

struct ProblemDeleter {
  void operator()(glp_prob* p) const { glp_delete_prob(p); }
};

}  // namespace

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

LinearProgram::Solution LinearProgram::solve() const {
  glp_term_out(GLP_OFF);
  std::unique_ptr<glp_prob, ProblemDeleter> holder(glp_create_prob());
  glp_prob* lp = holder.get();
  glp_set_obj_dir(lp, GLP_MIN);
  if (!columns_.empty()) glp_add_cols(lp, num_columns());
  for (int j = 0; j < num_columns(); ++j) {
    const Column& c = columns_[static_cast<std::size_t>(j)];
    glp_set_col_bnds(lp, j + 1, bound_type(c.lower, c.upper), std::isfinite(c.lower) ? c.lower : 0.0,
                     std::isfinite(c.upper) ? c.upper : 0.0);
    glp_set_obj_coef(lp, j + 1, c.cost);
  }
  if (!rows_.empty()) glp_add_rows(lp, num_rows());
  // GLPK's arrays are 1-based; element 0 is unused.
  std::vector<int> ia(1, 0), ja(1, 0);
  std::vector<double> ar(1, 0.0);
  for (int i = 0; i < num_rows(); ++i) {
    const Row& r = rows_[static_cast<std::size_t>(i)];
    glp_set_row_bnds(lp, i + 1, bound_type(r.lower, r.upper), std::isfinite(r.lower) ? r.lower : 0.0,
                     std::isfinite(r.upper) ? r.upper : 0.0);
    for (const auto& [column, coefficient] : r.terms) {
      if (coefficient == 0.0) continue;
      ia.push_back(i + 1);
      ja.push_back(column + 1);
      ar.push_back(coefficient);
    }
  }
  glp_load_matrix(lp, static_cast<int>(ia.size()) - 1, ia.data(), ja.data(), ar.data());

  glp_scale_prob(lp, GLP_SF_AUTO);
  glp_smcp parm;
  glp_init_smcp(&parm);
  parm.msg_lev = GLP_MSG_OFF;
  parm.meth = GLP_DUALP;  // dual simplex, falling back to the primal
  int rc = glp_simplex(lp, &parm);
  if (rc != 0) {
    // A numerical failure: once more with the primal simplex from the standard basis.
    glp_std_basis(lp);
    parm.meth = GLP_PRIMAL;
    rc = glp_simplex(lp, &parm);
  }
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
