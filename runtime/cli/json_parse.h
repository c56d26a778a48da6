// A small JSON reader for the tool's inputs (Google Benchmark's JSON
// output): RFC 8259 values into a tree. Numbers are doubles; strings are
// UTF-8 with \uXXXX escapes decoded (surrogate pairs included); objects
// keep their keys in document order. Nesting is limited to 64 levels.
//
//   absl::StatusOr<JsonValue> doc = ParseJson(text);
//   for (const JsonValue& b : doc->Get("benchmarks").array()) ...
//
// Errors are InvalidArgument naming line and column: "line 3, column 14:
// expected ',' or '}' after an object member".
//
// Thread-safety: a JsonValue is a plain value.
#ifndef UPAGER_RUNTIME_CLI_JSON_PARSE_H_
#define UPAGER_RUNTIME_CLI_JSON_PARSE_H_

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace upager::cli {

class JsonValue {
 public:
  enum class Type { kNull, kBool, kNumber, kString, kArray, kObject };

  JsonValue() = default;
  static JsonValue Bool(bool b);
  static JsonValue Number(double d);
  static JsonValue String(std::string s);
  static JsonValue Array(std::vector<JsonValue> items);
  static JsonValue Object(std::vector<std::pair<std::string, JsonValue>> members);

  Type type() const { return type_; }
  bool is_null() const { return type_ == Type::kNull; }

  // The value if it has that type, else nullopt.
  std::optional<bool> AsBool() const;
  std::optional<double> AsNumber() const;
  std::optional<std::string> AsString() const;
  // Empty unless an array / object.
  const std::vector<JsonValue>& array() const { return items_; }
  const std::vector<std::pair<std::string, JsonValue>>& members() const {
    return members_;
  }
  // The object member `key` (the first if repeated), or nullptr (also for
  // a non-object).
  const JsonValue* Find(absl::string_view key) const;

 private:
  Type type_ = Type::kNull;
  bool bool_ = false;
  double number_ = 0;
  std::string string_;
  std::vector<JsonValue> items_;
  std::vector<std::pair<std::string, JsonValue>> members_;
};

// Parses one JSON document (surrounding whitespace allowed, nothing else).
absl::StatusOr<JsonValue> ParseJson(absl::string_view text);

}  // namespace upager::cli

#endif  // UPAGER_RUNTIME_CLI_JSON_PARSE_H_
