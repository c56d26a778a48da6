// The `upager` tool's subcommand registry and flag handling.
//
// A subcommand is one .cc file in runtime/cli/ that defines its flags with
// ABSL_FLAG and registers itself:
//
//   ABSL_FLAG(bool, verbose, false, "Print every page");
//   int RunInspect(const std::vector<std::string>& args) { ... }
//   UPAGER_CLI_COMMAND(inspect, {.name = "snapshot inspect",
//                                .summary = "One line for 'upager --help'",
//                                .usage = "[--verbose] <file>\n\nWhat it
//                                does.", .run = RunInspect});
//
// and is added to the `upager_cli` sources in runtime/cli/CMakeLists.txt.
// A flag belongs to the subcommand whose file defines it: `upager probe
// --verbose` is an unknown flag even though the binary knows --verbose.
// A command can also accept another file's flag by name (shared_flags).
// `upager <name> --help` is generated from the usage text and the flags.
//
// Exit codes shared by every subcommand: kExitOk, kExitFailure (the command
// ran and failed), kExitUsage (bad command line; one line on stderr).
//
// Thread-safety: registration happens during static initialization and
// dispatch on the main thread; nothing here is for concurrent use.
#ifndef UPAGER_RUNTIME_CLI_COMMAND_H_
#define UPAGER_RUNTIME_CLI_COMMAND_H_

#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace upager::cli {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;

struct Command {
  // How it is invoked: one word ("probe") or several ("snapshot inspect").
  const char* name = nullptr;
  // One line for the list in `upager --help`.
  const char* summary = nullptr;
  // For `upager <name> --help`: what follows "usage: upager <name> " (the
  // synopsis), then a blank line and a description.
  const char* usage = nullptr;
  // Runs with the flags of its file already set; `args` are the positional
  // arguments. Returns the process exit code.
  int (*run)(const std::vector<std::string>& args) = nullptr;
  // Flags this command accepts although another command's file defines
  // them, by name (e.g. {"format"}). absl flag names are process-wide, so
  // two files cannot both define --format; the second command declares the
  // first one's (ABSL_DECLARE_FLAG) and lists it here.
  std::vector<std::string> shared_flags;
  // Set by UPAGER_CLI_COMMAND: the file whose ABSL_FLAGs are this
  // command's flags.
  const char* flags_file = nullptr;
};

// Adds `command` to the registry. Returns true (so a static can hold it).
bool RegisterCommand(Command command);

// Every registered command, sorted by name.
const std::vector<Command>& Commands();

// Runs `upager` with `args` = argv[1..]: dispatches to a subcommand, or
// prints help. Returns the exit code.
int Main(absl::Span<const char* const> args);

// Prints "upager <command>: <message>" as one line on stderr and returns
// kExitUsage. For a command's own checks of its flags and arguments.
int UsageError(absl::string_view command, absl::string_view message);

}  // namespace upager::cli

// Registers a command at static initialization; `id` names the static.
#define UPAGER_CLI_COMMAND(id, ...)                            \
  [[maybe_unused]] static const bool upager_cli_command_##id = \
      ::upager::cli::RegisterCommand([] {                      \
        ::upager::cli::Command c = __VA_ARGS__;                \
        c.flags_file = __FILE__;                               \
        return c;                                              \
      }())

#endif  // UPAGER_RUNTIME_CLI_COMMAND_H_
