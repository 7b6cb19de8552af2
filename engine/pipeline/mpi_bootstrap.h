#pragma once
// The MPI launch of a pipeline over several hosts (`mpirun -n G flexgen generate --num-gpus G
// --launcher mpi ...`; docs/multi-gpu.md). MPI serves only the bootstrap: each rank learns its
// rank and the world size, opens a TCP listening socket, and the ranks exchange their "host:port"
// addresses with MPI_Allgather; then every pair of ranks connects over TCP (the higher rank
// connects to the lower one) and the stages talk through a SocketChannel over those connections,
// exactly as over the local launcher's UNIX sockets. MPI is optional at build time (CMake finds
// it: FLEXGEN_HAVE_MPI); without it the MPI launch is refused with "built without MPI".
#include <cstdint>
#include <vector>

namespace flexgen {

// Whether this build has the MPI launch.
bool mpi_launch_available();

struct MpiStage {
  std::int32_t rank = 0;
  std::int32_t size = 1;
  std::vector<int> peer_fds;  // connected TCP sockets, -1 for this rank
};

// MPI_Init, checks that the world has `num_stages` ranks, and connects the ranks over TCP. The
// address this rank advertises: FLEXGEN_PIPELINE_HOST if set, else this host's name. Throws
// flexgen::Error (e.g. "built without MPI", a world of the wrong size, a connection refused).
MpiStage mpi_bootstrap(std::int32_t num_stages);

// MPI_Finalize when mpi_bootstrap initialized MPI: call it once the channel is finished, on the
// success path only (a failing rank exits without it, and mpirun ends the job).
void mpi_finish();

}  // namespace flexgen
