// `upager`: the command-line tool. Subcommands live one per file in this
// folder and register themselves (see command.h).
#include <vector>

#include "absl/types/span.h"
#include "runtime/cli/command.h"

int main(int argc, char** argv) {
  const std::vector<const char*> args(argv + 1, argv + argc);
  return upager::cli::Main(absl::MakeConstSpan(args));
}
