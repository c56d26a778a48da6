#include "runtime/cli/command.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/commandlineflag.h"
#include "absl/flags/reflection.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"

namespace upager::cli {
namespace {

// A function-local static: commands register from other files' static
// initializers, whose order relative to this file's is unspecified.
std::vector<Command>& Registry() {
  static auto* commands = new std::vector<Command>();
  return *commands;
}

bool IsHelp(absl::string_view arg) {
  return arg == "--help" || arg == "-h" || arg == "-help" ||
         arg == "--helpfull";
}

// Whether `flag` is defined in the command's file or is one of its
// shared_flags. absl reports a flag's file with leading slashes removed
// (its default filename normalization), so both sides are compared
// without them.
bool BelongsTo(const absl::CommandLineFlag& flag, const Command& c) {
  if (flag.IsRetired()) return false;
  for (const std::string& shared : c.shared_flags) {
    if (absl::string_view(shared) == flag.Name()) return true;
  }
  absl::string_view mine = c.flags_file;
  while (absl::ConsumePrefix(&mine, "/")) {
  }
  std::string theirs = flag.Filename();
  absl::string_view t = theirs;
  while (absl::ConsumePrefix(&t, "/")) {
  }
  return t == mine;
}

// The command's flags, sorted by name.
std::vector<absl::CommandLineFlag*> FlagsOf(const Command& c) {
  std::vector<absl::CommandLineFlag*> out;
  for (const auto& [name, flag] : absl::GetAllFlags()) {
    if (BelongsTo(*flag, c)) {
      out.push_back(flag);
    }
  }
  std::sort(out.begin(), out.end(),
            [](auto* a, auto* b) { return a->Name() < b->Name(); });
  return out;
}

// What a value must look like, for the error message.
std::string TypeName(const absl::CommandLineFlag& f) {
  if (f.IsOfType<bool>()) return "true or false";
  if (f.IsOfType<int32_t>()) return "a 32-bit integer";
  if (f.IsOfType<uint32_t>()) return "an unsigned 32-bit integer";
  if (f.IsOfType<int64_t>()) return "a 64-bit integer";
  if (f.IsOfType<uint64_t>()) return "an unsigned 64-bit integer";
  if (f.IsOfType<double>() || f.IsOfType<float>()) return "a number";
  if (f.IsOfType<absl::Duration>()) {
    return "a duration such as 1s, 500ms or 0";
  }
  return "a valid value";
}

void PrintTopHelp(std::FILE* out) {
  std::fprintf(out,
               "upager: a user-space pager on Linux userfaultfd.\n\n"
               "usage: upager <subcommand> [flags] [args]\n\n"
               "subcommands:\n");
  size_t width = 0;
  for (const Command& c : Commands()) {
    width = std::max(width, absl::string_view(c.name).size());
  }
  for (const Command& c : Commands()) {
    std::fprintf(out, "  %-*s  %s\n", static_cast<int>(width), c.name,
                 c.summary);
  }
  std::fprintf(out,
               "\n'upager <subcommand> --help' describes one.\n"
               "Exit codes: 0 ok, 1 the subcommand failed, 2 bad command "
               "line.\n");
}

void PrintCommandHelp(const Command& c) {
  std::printf("usage: upager %s %s\n", c.name, c.usage);
  // Flags of this command only: the binary holds every command's flags.
  const std::vector<absl::CommandLineFlag*> flags = FlagsOf(c);
  if (flags.empty()) return;
  std::printf("\nflags:\n");
  for (const absl::CommandLineFlag* f : flags) {
    std::printf("  --%s (default: %s)\n      %s\n",
                std::string(f->Name()).c_str(), f->DefaultValue().c_str(),
                f->Help().c_str());
  }
}

// Sets the command's flags from `args` and collects the positional
// arguments into *positional. Accepts --name=value, --name value,
// -name=value, and for booleans --name and --noname; "--" ends the flags.
// On a bad command line returns a message naming the offending argument.
std::string ParseFlags(const Command& c, absl::Span<const char* const> args,
                       std::vector<std::string>* positional) {
  for (size_t i = 0; i < args.size(); ++i) {
    absl::string_view arg = args[i];
    if (arg == "--") {
      for (++i; i < args.size(); ++i) positional->emplace_back(args[i]);
      break;
    }
    if (arg.size() < 2 || arg[0] != '-') {
      positional->emplace_back(arg);
      continue;
    }
    absl::string_view body = arg.substr(arg[1] == '-' ? 2 : 1);
    absl::string_view name = body;
    absl::string_view value;
    const size_t eq = body.find('=');
    const bool has_value = eq != absl::string_view::npos;
    if (has_value) {
      name = body.substr(0, eq);
      value = body.substr(eq + 1);
    }
    const std::string unknown = absl::StrCat(
        "unknown flag '", arg, "' (see 'upager ", c.name, " --help')");
    absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
    std::string negated_value;
    if ((flag == nullptr || !BelongsTo(*flag, c)) &&
        absl::StartsWith(name, "no") && !has_value) {
      // --noverbose for a boolean --verbose.
      absl::CommandLineFlag* positive =
          absl::FindCommandLineFlag(name.substr(2));
      if (positive != nullptr && positive->IsOfType<bool>() &&
          BelongsTo(*positive, c)) {
        flag = positive;
        negated_value = "false";
      }
    }
    if (flag == nullptr || !BelongsTo(*flag, c)) {
      return unknown;
    }
    std::string v;
    if (!negated_value.empty()) {
      v = negated_value;
    } else if (has_value) {
      v = std::string(value);
    } else if (flag->IsOfType<bool>()) {
      v = "true";
    } else if (i + 1 < args.size()) {
      v = args[++i];
    } else {
      return absl::StrCat("flag --", flag->Name(), " needs a value (",
                          TypeName(*flag), ")");
    }
    std::string error;
    if (!flag->ParseFrom(v, &error)) {
      return absl::StrCat("bad value '", v, "' for --", flag->Name(),
                          ": expected ", TypeName(*flag));
    }
  }
  return "";
}

// The command named by the longest run of leading words of `args` (so
// "snapshot inspect" wins over "snapshot"); *words says how many it took.
const Command* Find(absl::Span<const char* const> args, size_t* words) {
  const Command* best = nullptr;
  std::string name;
  for (size_t i = 0; i < args.size() && args[i][0] != '-'; ++i) {
    absl::StrAppend(&name, i == 0 ? "" : " ", args[i]);
    for (const Command& c : Commands()) {
      if (name == c.name) {
        best = &c;
        *words = i + 1;
      }
    }
  }
  return best;
}

}  // namespace

bool RegisterCommand(Command command) {
  Registry().push_back(command);
  std::sort(Registry().begin(), Registry().end(),
            [](const Command& a, const Command& b) {
              return absl::string_view(a.name) < absl::string_view(b.name);
            });
  return true;
}

const std::vector<Command>& Commands() { return Registry(); }

int UsageError(absl::string_view command, absl::string_view message) {
  std::fprintf(stderr, "upager%s%s: %s\n", command.empty() ? "" : " ",
               std::string(command).c_str(), std::string(message).c_str());
  return kExitUsage;
}

int Main(absl::Span<const char* const> args) {
  if (args.empty()) {
    PrintTopHelp(stderr);
    return kExitUsage;
  }
  // "upager help probe" is "upager probe --help".
  const bool help_word = args[0] == absl::string_view("help");
  if (help_word) args.remove_prefix(1);
  if (args.empty() || (!help_word && IsHelp(args[0]))) {
    PrintTopHelp(stdout);
    return kExitOk;
  }
  size_t words = 0;
  const Command* c = Find(args, &words);
  if (c == nullptr) {
    std::vector<std::string> names;
    for (const Command& k : Commands()) names.emplace_back(k.name);
    // A command group without its second word: "upager snapshot".
    std::vector<std::string> group;
    for (const std::string& name : names) {
      if (absl::StartsWith(name, absl::StrCat(args[0], " "))) {
        group.push_back(name);
      }
    }
    if (!group.empty()) {
      // "upager snapshot frobnicate": name what was asked for.
      if (args.size() > 1 && args[1][0] != '-') {
        return UsageError("", absl::StrCat("unknown subcommand '", args[0],
                                           " ", args[1], "' (known: ",
                                           absl::StrJoin(group, ", "), ")"));
      }
      return UsageError("", absl::StrCat("'", args[0], "' needs a subcommand: ",
                                         absl::StrJoin(group, ", ")));
    }
    if (args[0][0] == '-') {
      return UsageError("", absl::StrCat("unknown flag '", args[0],
                                         "' before the subcommand (see "
                                         "'upager --help')"));
    }
    return UsageError("", absl::StrCat("unknown subcommand '", args[0],
                                       "' (known: ", absl::StrJoin(names, ", "),
                                       "; see 'upager --help')"));
  }
  if (help_word) {
    PrintCommandHelp(*c);
    return kExitOk;
  }
  const absl::Span<const char* const> rest = args.subspan(words);
  // Help anywhere before "--" wins, so "upager probe --format=json --help"
  // prints help instead of probing.
  for (absl::string_view a : rest) {
    if (a == "--") break;
    if (IsHelp(a)) {
      PrintCommandHelp(*c);
      return kExitOk;
    }
  }
  std::vector<std::string> positional;
  if (std::string error = ParseFlags(*c, rest, &positional); !error.empty()) {
    return UsageError(c->name, error);
  }
  return c->run(positional);
}

}  // namespace upager::cli
