#include "engine/pipeline/mpi_bootstrap.h"

#include "engine/core/error.h"

#if defined(FLEXGEN_HAVE_MPI) && FLEXGEN_HAVE_MPI
#include <mpi.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>
#endif

namespace flexgen {

#if defined(FLEXGEN_HAVE_MPI) && FLEXGEN_HAVE_MPI

namespace {

bool g_initialized = false;
constexpr std::size_t kAddressBytes = 256;

void check_mpi(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  std::array<char, MPI_MAX_ERROR_STRING> text{};
  int n = 0;
  MPI_Error_string(rc, text.data(), &n);
  fail("MPI: ", what, " failed: ", std::string(text.data(), static_cast<std::size_t>(n)));
}

void set_nodelay(int fd) {
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

void write_rank(int fd, std::int32_t rank) {
  const char* p = reinterpret_cast<const char*>(&rank);
  std::size_t n = sizeof rank;
  while (n > 0) {
    const ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    FLEXGEN_REQUIRE(w > 0, "pipeline (MPI launch): sending the hello failed: ", std::strerror(errno));
    p += w;
    n -= static_cast<std::size_t>(w);
  }
}

std::int32_t read_rank(int fd) {
  std::int32_t rank = -1;
  char* p = reinterpret_cast<char*>(&rank);
  std::size_t n = sizeof rank;
  while (n > 0) {
    const ssize_t r = ::recv(fd, p, n, 0);
    if (r < 0 && errno == EINTR) continue;
    FLEXGEN_REQUIRE(r > 0, "pipeline (MPI launch): a peer closed its connection during the hello");
    p += r;
    n -= static_cast<std::size_t>(r);
  }
  return rank;
}

int connect_to(const std::string& address, std::int32_t peer) {
  const auto colon = address.rfind(':');
  FLEXGEN_REQUIRE(colon != std::string::npos, "pipeline (MPI launch): rank ", peer, " sent a malformed address '",
                  address, "'");
  const std::string host = address.substr(0, colon), port = address.substr(colon + 1);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const int rc = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &found);
  FLEXGEN_REQUIRE(rc == 0, "pipeline (MPI launch): cannot resolve rank ", peer, "'s host ", host, ": ",
                  ::gai_strerror(rc));
  int fd = -1;
  std::string why = "no address";
  for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
    fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    if (::connect(fd, a->ai_addr, a->ai_addrlen) == 0) break;
    why = std::strerror(errno);
    ::close(fd);
    fd = -1;
  }
  ::freeaddrinfo(found);
  FLEXGEN_REQUIRE(fd >= 0, "pipeline (MPI launch): cannot connect to rank ", peer, " at ", address, ": ", why);
  set_nodelay(fd);
  return fd;
}

}  // namespace

bool mpi_launch_available() { return true; }

MpiStage mpi_bootstrap(std::int32_t num_stages) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) {
    check_mpi(MPI_Init(nullptr, nullptr), "MPI_Init");
    g_initialized = true;
  }
  MpiStage s;
  int rank = 0, size = 0;
  check_mpi(MPI_Comm_rank(MPI_COMM_WORLD, &rank), "MPI_Comm_rank");
  check_mpi(MPI_Comm_size(MPI_COMM_WORLD, &size), "MPI_Comm_size");
  s.rank = rank;
  s.size = size;
  FLEXGEN_REQUIRE(size == num_stages, "pipeline (MPI launch): --num-gpus ", num_stages, " but the MPI job has ", size,
                  " ranks (start it with mpirun -n ", num_stages, ")");

  // Listen on any address, an ephemeral port.
  const int listener = ::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
  FLEXGEN_REQUIRE(listener >= 0, "pipeline (MPI launch): cannot open a TCP socket: ", std::strerror(errno));
  int zero = 0;
  ::setsockopt(listener, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);  // IPv4 peers too
  sockaddr_in6 addr{};
  addr.sin6_family = AF_INET6;
  addr.sin6_addr = in6addr_any;
  addr.sin6_port = 0;
  socklen_t len = sizeof addr;
  if (::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(listener, size) != 0 ||
      ::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    const int e = errno;
    ::close(listener);
    fail("pipeline (MPI launch): cannot listen on a TCP port: ", std::strerror(e));
  }
  std::string host;
  if (const char* h = std::getenv("FLEXGEN_PIPELINE_HOST"); h != nullptr && *h != '\0') {
    host = h;
  } else {
    std::array<char, 256> name{};
    ::gethostname(name.data(), name.size() - 1);
    host = name.data();
  }
  const std::string mine = str_cat(host, ":", ntohs(addr.sin6_port));
  FLEXGEN_REQUIRE(mine.size() < kAddressBytes, "pipeline (MPI launch): host name too long: ", host);
  std::vector<char> all(kAddressBytes * static_cast<std::size_t>(size), '\0');
  std::vector<char> own(kAddressBytes, '\0');
  std::memcpy(own.data(), mine.data(), mine.size());
  check_mpi(MPI_Allgather(own.data(), static_cast<int>(kAddressBytes), MPI_CHAR, all.data(),
                          static_cast<int>(kAddressBytes), MPI_CHAR, MPI_COMM_WORLD),
            "MPI_Allgather of the listen addresses");

  s.peer_fds.assign(static_cast<std::size_t>(size), -1);
  try {
    // Connect to every lower rank (the listen backlog takes the connection before it accepts),
    // then accept one connection from every higher rank; each connection starts with the
    // connecting rank's number.
    for (std::int32_t p = 0; p < rank; ++p) {
      const std::string address(all.data() + kAddressBytes * static_cast<std::size_t>(p));
      const int fd = connect_to(address, p);
      s.peer_fds[static_cast<std::size_t>(p)] = fd;
      write_rank(fd, rank);
    }
    for (std::int32_t n = rank + 1; n < size; ++n) {
      const int fd = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
      FLEXGEN_REQUIRE(fd >= 0, "pipeline (MPI launch): accept failed: ", std::strerror(errno));
      set_nodelay(fd);
      const std::int32_t from = read_rank(fd);
      if (from <= rank || from >= size || s.peer_fds[static_cast<std::size_t>(from)] >= 0) {
        ::close(fd);
        fail("pipeline (MPI launch): an unexpected connection (rank ", from, ") on rank ", rank, "'s port");
      }
      s.peer_fds[static_cast<std::size_t>(from)] = fd;
    }
  } catch (...) {
    ::close(listener);
    for (int fd : s.peer_fds) {
      if (fd >= 0) ::close(fd);
    }
    throw;
  }
  ::close(listener);
  check_mpi(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier");
  return s;
}

void mpi_finish() {
  if (g_initialized) {
    MPI_Finalize();
    g_initialized = false;
  }
}

#else  // without MPI

bool mpi_launch_available() { return false; }

MpiStage mpi_bootstrap(std::int32_t) {
  fail("--launcher mpi: this flexgen was built without MPI (install libopenmpi-dev and reconfigure; CMake finds it "
       "and defines FLEXGEN_HAVE_MPI)");
}

void mpi_finish() {}

#endif

}  // namespace flexgen
