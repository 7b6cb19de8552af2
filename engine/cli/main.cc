// flexgen: the command-line front end. Each subcommand lives in its own cmd_*.cc.
#include <iostream>
#include <string>

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: flexgen <command> [options]\n";
    return 2;
  }
  std::cerr << "flexgen: error: unknown command '" << argv[1] << "'\n";
  return 2;
}
