#pragma once
// The fixed time of one GPU compute task of the engine (HardwareSpec::gpu_task_overhead_s): the
// CUDA runtime generates with a tiny model whose matrix products and attention take next to
// nothing, and the decode `compute` and `compute_post` tasks' measured times (CUDA events) are
// what is left — kernel launches, stream and event work, host code between kernels. Runs the real
// runtime, so it follows whatever kernels the build launches.
#include "engine/profile/measurements.h"

namespace flexgen {

// Throws flexgen::Error without the CUDA backend or a GPU, or for any failure of the run.
TaskOverheadMeasurement measure_task_overhead(int device);

}  // namespace flexgen
