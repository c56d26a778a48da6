// Minimal JSON output for the tool's --format=json modes: objects built
// key by key, arrays from already-encoded items. Output only; there is no
// parser. Keys keep their insertion order.
//
// Thread-safety: a JsonObject is a plain value; use it from one thread.
#ifndef UPAGER_RUNTIME_CLI_JSON_H_
#define UPAGER_RUNTIME_CLI_JSON_H_

#include <string>
#include <type_traits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace upager::cli {

// `s` as a JSON string literal: quoted, with quotes, backslashes and
// control characters escaped.
std::string JsonString(absl::string_view s);

// "[a,b,...]" from items that are already JSON.
std::string JsonArray(const std::vector<std::string>& items);

class JsonObject {
 public:
  void Add(absl::string_view key, absl::string_view value) {
    AddRaw(key, JsonString(value));
  }
  // Without these, a string literal or std::string would pick the bool
  // overload (pointer-to-bool is a standard conversion).
  void Add(absl::string_view key, const char* value) {
    Add(key, absl::string_view(value));
  }
  void Add(absl::string_view key, const std::string& value) {
    Add(key, absl::string_view(value));
  }
  void Add(absl::string_view key, bool value) {
    AddRaw(key, value ? "true" : "false");
  }
  template <typename T,
            std::enable_if_t<std::is_integral_v<T> && !std::is_same_v<T, bool>,
                             int> = 0>
  void Add(absl::string_view key, T value) {
    AddRaw(key, absl::StrCat(value));
  }
  // `json` must already be valid JSON (an object, array, or null).
  void AddRaw(absl::string_view key, absl::string_view json) {
    absl::StrAppend(&body_, body_.empty() ? "" : ",", JsonString(key), ":",
                    json);
  }
  std::string Build() const { return absl::StrCat("{", body_, "}"); }

 private:
  std::string body_;
};

}  // namespace upager::cli

#endif  // UPAGER_RUNTIME_CLI_JSON_H_
