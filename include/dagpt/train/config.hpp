// TrainConfig: every setting of the example trainer (REFERENCE.md §7.1 without wandb, compile, dtype and
// DDP, plus dagpt's own), read from a flat hand-written TOML file and --key=value overrides, and checked.
// Errors name the key, where its value came from (file:line or the argument) and the allowed values.
#pragma once

#include <toml++/toml.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <variant>
#include <vector>

#include "dagpt/core/error.hpp"
#include "dagpt/data/stream.hpp"

namespace dagpt::train {

// A config file that cannot be read or parsed, an unknown key, a value of the wrong type, or an
// impossible combination of values.
class ConfigError : public ValueError {
 public:
  using ValueError::ValueError;
};

struct TrainConfig {
  // run
  std::string name = "predictor";          // the run's name (logs, checkpoint names)
  std::string out_dir = "runs/predictor";  // run directory: checkpoints, metrics.jsonl, config.toml, curves
  std::string init_from = "scratch";       // scratch | resume | latest | gpt2 | a checkpoint path
  std::int64_t seed = 42;                  // model init, dropout and data streams all derive from it
  int threads = 0;                         // compute threads (0: OpenMP's default)
  // model
  std::string tokenizer = "gpt2";  // gpt2 | char
  std::string bpe_dir;             // GPT-2's encoder.json + vocab.bpe ("": $DAGPT_GPT2_DIR, else .cache/gpt2)
  int n_layer = 2;
  int n_head = 4;
  int n_embd = 256;
  double dropout = 0.1;
  bool bias = true;
  int block_size = 32;
  int dag_depth = 4;
  std::string layout = "reference";  // reference (d initial slots) | head (d + 1)
  std::string mag_head = "direct";   // direct (|W h + b|) | digits (HEAD's digit logits)
  bool ste = false;                  // straight-through sharpening of V_sign, O and G (HEAD's option)
  bool sharpen_eval = true;          // evaluate and predict with the sharpened (discrete) plan
  // data
  int max_digits = 4;
  int max_decimal_places = 4;
  bool uniform_num_ops = false;      // HEAD: op count uniform in 0 .. d-1 instead of weights 1 .. d
  double integer_probability = 0.0;  // HEAD's 0.5: numbers without decimals may be printed as integers
  int prefetch = 4;                  // batches the data stream builds ahead
  int data_threads = 1;              // its background threads
  // batches and optimizer
  int batch_size = 256;
  int gradient_accumulation_steps = 1;  // a new batch for every micro-step
  double learning_rate = 3e-4;
  double min_lr = 2e-4;
  std::int64_t max_iters = 10000;
  std::int64_t warmup_iters = 200;
  std::int64_t lr_decay_iters = 10000;
  bool decay_lr = true;
  bool use_cyclical_lr = false;
  std::int64_t cyclical_lr_period = 1000;
  double cyclical_lr_amplitude = 0.1;
  double weight_decay = 0.01;
  bool decay_all_params = false;  // reference: decay every parameter; default: 2-D weights only
  double beta1 = 0.9;
  double beta2 = 0.95;
  double grad_clip = 1.0;  // global L2 norm; 0 turns clipping off
  // losses
  std::string loss_mode = "default";  // default (fixed) | reference (the seed's formulas)
  double exec_loss_weight = 0.01;
  double g_loss_weight = 1.0;
  bool enable_vmag = true;
  bool enable_vsign = true;
  bool enable_o = true;
  bool enable_g = true;
  bool enable_exec = true;
  bool check_nans = false;  // stop with an error at the first non-finite loss
  // evaluation and logging
  std::int64_t eval_interval = 20;
  std::int64_t eval_iters = 1;
  std::int64_t log_interval = 1;
  bool eval_only = false;  // evaluate once (iteration 0) and stop
  // checkpoints
  bool always_save_checkpoint = true;  // at every evaluation; otherwise only on a new best val loss
  int keep_last = 2;                   // checkpoints kept in out_dir (older ones are deleted)
  bool reload_reset_iters = false;     // init_from a checkpoint but start again at iteration 0

  // Where each key's value came from: "file.toml:12" or "--key=value"; defaults are absent.
  std::map<std::string, std::string> sources;

  // ---------------------------------------------------------------------------------------------------
  // The key table: name, group (a comment header in to_toml), member, description and allowed strings.
  using Member = std::variant<bool TrainConfig::*, int TrainConfig::*, std::int64_t TrainConfig::*,
                              double TrainConfig::*, std::string TrainConfig::*>;
  struct Key {
    const char* name;
    const char* group;
    Member member;
    const char* help;
    std::vector<std::string> choices;  // for strings with a fixed set of values
  };
  static const std::vector<Key>& keys();
  static const Key* find_key(std::string_view name) {
    for (const Key& k : keys())
      if (name == k.name) return &k;
    return nullptr;
  }

  // Defaults, then the TOML text (flat `key = value` lines; `source` names it in errors), validated.
  static TrainConfig from_toml(std::string_view text, std::string_view source = "<string>");
  static TrainConfig from_file(const std::filesystem::path& path);
  // Defaults, then the file (if any), then the overrides in order (each "--key=value"), validated.
  static TrainConfig load(const std::optional<std::filesystem::path>& file,
                          const std::vector<std::string>& overrides);

  // Applies the keys of a TOML document on top of this config (no validation).
  void merge_toml(std::string_view text, std::string_view source);
  // One command-line override: "--key=value", "key=value", or "--key" for a boolean (true). Dashes in
  // the key read as underscores (--eval-only = --eval_only). Bools take true/false/1/0/yes/no/on/off.
  void apply_override(std::string_view arg);
  // Sets one key from its text form; `origin` says where it came from in errors.
  void set(std::string_view key, std::string_view value, std::string_view origin);
  // Throws ConfigError for the first impossible value or combination, naming the keys and their sources.
  void validate() const;

  // The effective config as TOML, grouped and commented; from_toml(to_toml()) == *this.
  std::string to_toml() const;
  // One key's value as TOML text ("2", "0.001", "\"gpt2\"", "true").
  std::string value_text(const Key& key) const;
  std::string value_text(std::string_view key) const;

  // The data stream of this config: the training (expr::kTrainStream) or validation stream.
  data::DagStreamOptions stream_options(std::uint64_t stream) const {
    data::DagStreamOptions o;
    o.batch_size = batch_size;
    o.block_size = block_size;
    o.depth = dag_depth;
    o.layout = layout == "head" ? data::PlanLayout::head : data::PlanLayout::reference;
    o.max_digits = max_digits;
    o.max_decimal_places = max_decimal_places;
    o.uniform_num_ops = uniform_num_ops;
    o.integer_probability = integer_probability;
    o.reference = loss_mode == "reference";
    o.seed = static_cast<std::uint64_t>(seed);
    o.stream = stream;
    o.prefetch = prefetch;
    o.threads = data_threads;
    return o;
  }

  // Equal values for every key (sources are not compared).
  friend bool operator==(const TrainConfig& a, const TrainConfig& b) {
    for (const Key& k : keys()) {
      const bool same = std::visit([&](auto m) { return a.*m == b.*m; }, k.member);
      if (!same) return false;
    }
    return true;
  }
  friend bool operator!=(const TrainConfig& a, const TrainConfig& b) { return !(a == b); }

 private:
  std::string where(std::string_view key) const {
    auto it = sources.find(std::string(key));
    return it == sources.end() ? std::string("default") : it->second;
  }
  void set_node(const Key& key, const toml::node& node, const std::string& origin);
};

namespace detail {

inline std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diag = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

[[noreturn]] inline void unknown_key(std::string_view key, const std::string& origin) {
  const TrainConfig::Key* best = nullptr;
  std::size_t best_d = std::numeric_limits<std::size_t>::max();
  for (const auto& k : TrainConfig::keys()) {
    const std::size_t d = edit_distance(key, k.name);
    if (d < best_d) {
      best_d = d;
      best = &k;
    }
  }
  std::string names;
  for (const auto& k : TrainConfig::keys()) names += (names.empty() ? "" : ", ") + std::string(k.name);
  if (best != nullptr && best_d <= std::max<std::size_t>(3, key.size() / 3)) {
    dagpt::detail::raise<ConfigError>("{}: unknown key '{}'; did you mean '{}'?", origin, key, best->name);
  }
  dagpt::detail::raise<ConfigError>("{}: unknown key '{}'; the keys are: {}", origin, key, names);
}

inline std::string toml_string(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (u < 0x20 || u == 0x7f) {
      out += fmt::format("\\u{:04X}", u);
    } else {
      out += c;
    }
  }
  return out + "\"";
}

inline std::string toml_double(double v) {
  std::string s = fmt::format("{}", v);
  if (s.find_first_of(".eEn") == std::string::npos) s += ".0";  // 1 -> 1.0; inf and nan stay as they are
  return s;
}

// A TOML value for an error message: its type and, for scalars, its text.
inline std::string describe(const toml::node& node) {
  switch (node.type()) {
    case toml::node_type::string:
      return "the string " + toml_string(node.as_string()->get());
    case toml::node_type::integer:
      return fmt::format("the integer {}", node.as_integer()->get());
    case toml::node_type::floating_point:
      return fmt::format("the float {}", node.as_floating_point()->get());
    case toml::node_type::boolean:
      return fmt::format("the boolean {}", node.as_boolean()->get());
    case toml::node_type::array:
      return "an array";
    case toml::node_type::table:
      return "a table";
    default:
      return "a date or time";
  }
}

inline std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

inline std::string choices_text(const std::vector<std::string>& choices) {
  std::string out;
  for (std::size_t i = 0; i < choices.size(); ++i) {
    out += (i == 0 ? "" : (i + 1 == choices.size() ? " or " : ", ")) + toml_string(choices[i]);
  }
  return out;
}

template <typename Int>
void set_integer(Int& field, std::int64_t v, const char* key, const std::string& origin) {
  if (v < static_cast<std::int64_t>(std::numeric_limits<Int>::min()) ||
      v > static_cast<std::int64_t>(std::numeric_limits<Int>::max())) {
    dagpt::detail::raise<ConfigError>("{}: {} = {} does not fit a {}-bit integer", origin, key, v,
                                      sizeof(Int) * 8);
  }
  field = static_cast<Int>(v);
}

// An integer from a double: only when the double is one exactly (warmup_iters = 200.0 is 200).
inline std::optional<std::int64_t> integral(double v) {
  if (!std::isfinite(v) || v != std::floor(v) || std::abs(v) > 9.0e15) return std::nullopt;
  return static_cast<std::int64_t>(v);
}

inline std::optional<double> parse_double(std::string_view s) {
  double v = 0;
  const char* first = s.data();
  const char* last = s.data() + s.size();
  if (first != last && *first == '+') ++first;
  const auto r = std::from_chars(first, last, v);
  if (r.ec != std::errc() || r.ptr != last || first == last) return std::nullopt;
  return v;
}

}  // namespace detail

inline const std::vector<TrainConfig::Key>& TrainConfig::keys() {
  using C = TrainConfig;
  static const std::vector<Key> table{
      {"name", "run", &C::name, "the run's name (logs, checkpoint names)", {}},
      {"out_dir", "run", &C::out_dir, "run directory: checkpoints, metrics.jsonl, config.toml, curves", {}},
      {"init_from",
       "run",
       &C::init_from,
       "scratch | resume | latest (newest checkpoint of out_dir) | gpt2 | a path",
       {}},
      {"seed", "run", &C::seed, "one seed for the init, dropout and the data streams", {}},
      {"threads", "run", &C::threads, "compute threads (0: OpenMP's default)", {}},
      {"tokenizer",
       "model",
       &C::tokenizer,
       "gpt2 (the reference's BPE) or char (21 ids, no files)",
       {"gpt2", "char"}},
      {"bpe_dir",
       "model",
       &C::bpe_dir,
       "GPT-2's encoder.json + vocab.bpe (empty: $DAGPT_GPT2_DIR, else .cache/gpt2)",
       {}},
      {"n_layer", "model", &C::n_layer, "transformer blocks", {}},
      {"n_head", "model", &C::n_head, "attention heads (n_embd must be a multiple)", {}},
      {"n_embd", "model", &C::n_embd, "width", {}},
      {"dropout", "model", &C::dropout, "dropout probability in [0, 1)", {}},
      {"bias", "model", &C::bias, "biases in the Linear and LayerNorm layers", {}},
      {"block_size", "model", &C::block_size, "tokens per sequence (longer texts are cut)", {}},
      {"dag_depth",
       "model",
       &C::dag_depth,
       "plan depth d (1 .. 32); the generator draws 0 .. d-1 operations",
       {}},
      {"layout", "model", &C::layout, "initial slots: reference (d) or head (d + 1)", {"reference", "head"}},
      {"mag_head",
       "model",
       &C::mag_head,
       "magnitudes: direct |W h + b| or digits (digit logits)",
       {"direct", "digits"}},
      {"ste",
       "model",
       &C::ste,
       "straight-through sharpening: V_sign to +-1, O rounded, G to 0/1 in the forward pass",
       {}},
      {"sharpen_eval",
       "model",
       &C::sharpen_eval,
       "evaluate and predict with the sharpened plan (the one the metrics judge)",
       {}},
      {"max_digits", "data", &C::max_digits, "integer digits per number (1 .. 15)", {}},
      {"max_decimal_places", "data", &C::max_decimal_places, "decimal digits per number (0 .. 15)", {}},
      {"uniform_num_ops",
       "data",
       &C::uniform_num_ops,
       "op count uniform in 0 .. d-1 (HEAD) instead of weighted",
       {}},
      {"integer_probability",
       "data",
       &C::integer_probability,
       "share of numbers without decimals printed as integers",
       {}},
      {"prefetch",
       "data",
       &C::prefetch,
       "batches the data stream builds ahead (0: in the training thread)",
       {}},
      {"data_threads", "data", &C::data_threads, "background threads of the data stream", {}},
      {"batch_size", "optim", &C::batch_size, "sequences per micro-step", {}},
      {"gradient_accumulation_steps",
       "optim",
       &C::gradient_accumulation_steps,
       "micro-steps per optimizer step, each on a new batch",
       {}},
      {"learning_rate", "optim", &C::learning_rate, "peak learning rate", {}},
      {"min_lr", "optim", &C::min_lr, "learning rate after the cosine decay (<= learning_rate)", {}},
      {"max_iters", "optim", &C::max_iters, "last iteration (iterations 0 .. max_iters)", {}},
      {"warmup_iters", "optim", &C::warmup_iters, "linear warmup iterations", {}},
      {"lr_decay_iters", "optim", &C::lr_decay_iters, "end of the cosine decay (>= warmup_iters)", {}},
      {"decay_lr", "optim", &C::decay_lr, "cosine decay from learning_rate to min_lr", {}},
      {"use_cyclical_lr",
       "optim",
       &C::use_cyclical_lr,
       "multiply by 1 + amplitude*sin(2 pi t/period) after warmup",
       {}},
      {"cyclical_lr_period", "optim", &C::cyclical_lr_period, "period of the cyclical factor", {}},
      {"cyclical_lr_amplitude",
       "optim",
       &C::cyclical_lr_amplitude,
       "amplitude of the cyclical factor in [0, 1)",
       {}},
      {"weight_decay", "optim", &C::weight_decay, "AdamW decoupled weight decay", {}},
      {"decay_all_params",
       "optim",
       &C::decay_all_params,
       "decay every parameter (reference) or 2-D weights only",
       {}},
      {"beta1", "optim", &C::beta1, "AdamW beta1 in [0, 1)", {}},
      {"beta2", "optim", &C::beta2, "AdamW beta2 in [0, 1)", {}},
      {"grad_clip", "optim", &C::grad_clip, "global gradient norm limit (0: off)", {}},
      {"loss_mode",
       "loss",
       &C::loss_mode,
       "default (fixed losses) or reference (the seed's formulas)",
       {"default", "reference"}},
      {"exec_loss_weight", "loss", &C::exec_loss_weight, "weight of the executed-value loss", {}},
      {"g_loss_weight", "loss", &C::g_loss_weight, "weight of the gate loss", {}},
      {"enable_vmag", "loss", &C::enable_vmag, "magnitude loss on", {}},
      {"enable_vsign", "loss", &C::enable_vsign, "sign loss on", {}},
      {"enable_o", "loss", &C::enable_o, "operand matrix loss on", {}},
      {"enable_g", "loss", &C::enable_g, "gate loss on", {}},
      {"enable_exec", "loss", &C::enable_exec, "executed-value loss on", {}},
      {"check_nans", "loss", &C::check_nans, "stop at the first non-finite loss", {}},
      {"eval_interval", "eval", &C::eval_interval, "evaluate every this many iterations", {}},
      {"eval_iters", "eval", &C::eval_iters, "validation batches per evaluation", {}},
      {"log_interval", "eval", &C::log_interval, "log every this many iterations", {}},
      {"eval_only", "eval", &C::eval_only, "evaluate once and stop", {}},
      {"always_save_checkpoint",
       "checkpoint",
       &C::always_save_checkpoint,
       "save at every evaluation (otherwise on a new best validation loss)",
       {}},
      {"keep_last", "checkpoint", &C::keep_last, "checkpoints kept in out_dir", {}},
      {"reload_reset_iters",
       "checkpoint",
       &C::reload_reset_iters,
       "start at iteration 0 after loading a checkpoint",
       {}},
  };
  return table;
}

inline void TrainConfig::set_node(const Key& key, const toml::node& node, const std::string& origin) {
  auto type_error = [&](const char* expected) {
    dagpt::detail::raise<ConfigError>("{}: {} must be {}, got {}", origin, key.name, expected,
                                      detail::describe(node));
  };
  std::visit(
      [&](auto m) {
        using F = std::remove_reference_t<decltype(this->*m)>;
        if constexpr (std::is_same_v<F, bool>) {
          if (!node.is_boolean()) type_error("true or false");
          this->*m = node.as_boolean()->get();
        } else if constexpr (std::is_same_v<F, int> || std::is_same_v<F, std::int64_t>) {
          std::optional<std::int64_t> v;
          if (node.is_integer()) v = node.as_integer()->get();
          if (node.is_floating_point()) v = detail::integral(node.as_floating_point()->get());
          if (!v) type_error("an integer");
          detail::set_integer(this->*m, *v, key.name, origin);
        } else if constexpr (std::is_same_v<F, double>) {
          if (node.is_integer()) {
            this->*m = static_cast<double>(node.as_integer()->get());
          } else if (node.is_floating_point()) {
            this->*m = node.as_floating_point()->get();
          } else {
            type_error("a number");
          }
        } else {
          if (!node.is_string()) type_error(key.choices.empty() ? "a string" : "one of the strings");
          const std::string& s = node.as_string()->get();
          if (!key.choices.empty() &&
              std::find(key.choices.begin(), key.choices.end(), s) == key.choices.end()) {
            dagpt::detail::raise<ConfigError>("{}: {} = {} is not allowed; use {}", origin, key.name,
                                              detail::toml_string(s), detail::choices_text(key.choices));
          }
          this->*m = s;
        }
      },
      key.member);
  sources[key.name] = origin;
}

inline void TrainConfig::merge_toml(std::string_view text, std::string_view source) {
  toml::table table;
  try {
    table = toml::parse(text, source);
  } catch (const toml::parse_error& e) {
    dagpt::detail::raise<ConfigError>("{}:{}:{}: {}", source, e.source().begin.line, e.source().begin.column,
                                      e.description());
  }
  // In file order, so that the first problem reported is the first in the file.
  std::vector<std::pair<const toml::key*, const toml::node*>> items;
  for (auto&& [k, v] : table) items.emplace_back(&k, &v);
  std::sort(items.begin(), items.end(),
            [](const auto& a, const auto& b) { return a.first->source().begin < b.first->source().begin; });
  for (const auto& [k, v] : items) {
    const std::string origin = fmt::format("{}:{}", source, k->source().begin.line);
    const Key* key = find_key(k->str());
    if (key == nullptr) {
      if (v->is_table()) {
        dagpt::detail::raise<ConfigError>("{}: [{}] is a table; dagpt configs are flat `key = value` lines",
                                          origin, k->str());
      }
      detail::unknown_key(k->str(), origin);
    }
    set_node(*key, *v, origin);
  }
}

inline void TrainConfig::set(std::string_view key_name, std::string_view value,
                             std::string_view origin_view) {
  const std::string origin(origin_view);
  const Key* key = find_key(key_name);
  if (key == nullptr) detail::unknown_key(key_name, origin);
  std::visit(
      [&](auto m) {
        using F = std::remove_reference_t<decltype(this->*m)>;
        if constexpr (std::is_same_v<F, bool>) {
          const std::string v = detail::lower(value);
          if (v == "true" || v == "1" || v == "yes" || v == "on") {
            this->*m = true;
          } else if (v == "false" || v == "0" || v == "no" || v == "off") {
            this->*m = false;
          } else {
            dagpt::detail::raise<ConfigError>("{}: {} must be true/false (or 1/0, yes/no, on/off), got '{}'",
                                              origin, key->name, value);
          }
        } else if constexpr (std::is_same_v<F, int> || std::is_same_v<F, std::int64_t>) {
          std::int64_t v = 0;
          const char* first = value.data() + (!value.empty() && value[0] == '+' ? 1 : 0);
          const auto r = std::from_chars(first, value.data() + value.size(), v);
          std::optional<std::int64_t> got;
          if (r.ec == std::errc() && r.ptr == value.data() + value.size() && first != r.ptr) got = v;
          if (!got) {  // 1e4 or 200.0
            if (auto d = detail::parse_double(value)) got = detail::integral(*d);
          }
          if (!got) {
            dagpt::detail::raise<ConfigError>("{}: {} must be an integer, got '{}'", origin, key->name,
                                              value);
          }
          detail::set_integer(this->*m, *got, key->name, origin);
        } else if constexpr (std::is_same_v<F, double>) {
          const auto d = detail::parse_double(value);
          if (!d)
            dagpt::detail::raise<ConfigError>("{}: {} must be a number, got '{}'", origin, key->name, value);
          this->*m = *d;
        } else {
          const std::string s(value);
          if (!key->choices.empty() &&
              std::find(key->choices.begin(), key->choices.end(), s) == key->choices.end()) {
            dagpt::detail::raise<ConfigError>("{}: {} = '{}' is not allowed; use {}", origin, key->name,
                                              value, detail::choices_text(key->choices));
          }
          this->*m = s;
        }
      },
      key->member);
  sources[key->name] = origin;
}

inline void TrainConfig::apply_override(std::string_view arg) {
  std::string_view body = arg;
  if (body.substr(0, 2) == "--") body.remove_prefix(2);
  const std::size_t eq = body.find('=');
  std::string key(body.substr(0, eq));
  std::replace(key.begin(), key.end(), '-', '_');
  if (key.empty()) dagpt::detail::raise<ConfigError>("{}: expected --key=value", arg);
  if (eq == std::string_view::npos) {  // a bare --flag sets a boolean
    const Key* k = find_key(key);
    if (k == nullptr) detail::unknown_key(key, std::string(arg));
    if (!std::holds_alternative<bool TrainConfig::*>(k->member)) {
      dagpt::detail::raise<ConfigError>("{}: {} needs a value: --{}=...", arg, key, key);
    }
    set(key, "true", arg);
    return;
  }
  set(key, body.substr(eq + 1), arg);
}

inline void TrainConfig::validate() const {
  auto fail = [this](std::string_view key, const std::string& what) {
    dagpt::detail::raise<ConfigError>("{}: {} = {} {}", where(key), key, value_text(key), what);
  };
  auto at_least = [&](std::string_view key, std::int64_t v, std::int64_t lo) {
    if (v < lo) fail(key, fmt::format("is out of range; allowed: >= {}", lo));
  };
  auto in_range = [&](std::string_view key, std::int64_t v, std::int64_t lo, std::int64_t hi) {
    if (v < lo || v > hi) fail(key, fmt::format("is out of range; allowed: {} .. {}", lo, hi));
  };
  auto finite_at_least = [&](std::string_view key, double v, double lo) {
    if (!std::isfinite(v) || v < lo)
      fail(key, fmt::format("is out of range; allowed: a finite number >= {}", lo));
  };
  auto unit = [&](std::string_view key, double v) {  // [0, 1)
    if (!(v >= 0.0 && v < 1.0)) fail(key, "is out of range; allowed: 0 <= value < 1");
  };
  auto nonempty = [&](std::string_view key, const std::string& v) {
    if (v.empty()) fail(key, "must not be empty");
  };
  nonempty("name", name);
  nonempty("out_dir", out_dir);
  nonempty("init_from", init_from);
  at_least("seed", seed, 0);
  at_least("threads", threads, 0);
  at_least("n_layer", n_layer, 1);
  at_least("n_head", n_head, 1);
  at_least("n_embd", n_embd, 1);
  if (n_embd % n_head != 0) {
    dagpt::detail::raise<ConfigError>(
        "{}: n_embd = {} must be a multiple of n_head = {} ({}); e.g. n_embd = {}", where("n_embd"), n_embd,
        n_head, where("n_head"), (n_embd / n_head + 1) * n_head);
  }
  unit("dropout", dropout);
  at_least("block_size", block_size, 1);
  in_range("dag_depth", dag_depth, 1, dag::kMaxDepth);
  in_range("max_digits", max_digits, 1, 15);
  in_range("max_decimal_places", max_decimal_places, 0, 15);
  if (!(integer_probability >= 0.0 && integer_probability <= 1.0)) {
    fail("integer_probability", "is out of range; allowed: 0 .. 1");
  }
  at_least("prefetch", prefetch, 0);
  at_least("data_threads", data_threads, 1);
  at_least("batch_size", batch_size, 1);
  at_least("gradient_accumulation_steps", gradient_accumulation_steps, 1);
  if (!std::isfinite(learning_rate) || learning_rate <= 0) {
    fail("learning_rate", "is out of range; allowed: a finite number > 0");
  }
  finite_at_least("min_lr", min_lr, 0.0);
  if (min_lr > learning_rate) {
    dagpt::detail::raise<ConfigError>("{}: min_lr = {} must not exceed learning_rate = {} ({})",
                                      where("min_lr"), value_text("min_lr"), value_text("learning_rate"),
                                      where("learning_rate"));
  }
  at_least("max_iters", max_iters, 0);
  at_least("warmup_iters", warmup_iters, 0);
  at_least("lr_decay_iters", lr_decay_iters, 0);
  if (decay_lr && warmup_iters > lr_decay_iters) {
    dagpt::detail::raise<ConfigError>(
        "{}: warmup_iters = {} must not exceed lr_decay_iters = {} ({}) when decay_lr is true",
        where("warmup_iters"), warmup_iters, lr_decay_iters, where("lr_decay_iters"));
  }
  at_least("cyclical_lr_period", cyclical_lr_period, 1);
  unit("cyclical_lr_amplitude", cyclical_lr_amplitude);
  finite_at_least("weight_decay", weight_decay, 0.0);
  unit("beta1", beta1);
  unit("beta2", beta2);
  finite_at_least("grad_clip", grad_clip, 0.0);
  finite_at_least("exec_loss_weight", exec_loss_weight, 0.0);
  finite_at_least("g_loss_weight", g_loss_weight, 0.0);
  if (!enable_vmag && !enable_vsign && !enable_o && !enable_g && !enable_exec) {
    dagpt::detail::raise<ConfigError>(
        "{}: every loss is off (enable_vmag, enable_vsign, enable_o, enable_g, enable_exec); enable at least "
        "one",
        where("enable_vmag"));
  }
  at_least("eval_interval", eval_interval, 1);
  at_least("eval_iters", eval_iters, 1);
  at_least("log_interval", log_interval, 1);
  at_least("keep_last", keep_last, 1);
}

inline std::string TrainConfig::value_text(const Key& key) const {
  return std::visit(
      [this](auto m) -> std::string {
        using F = std::remove_cv_t<std::remove_reference_t<decltype(this->*m)>>;
        const F& v = this->*m;
        if constexpr (std::is_same_v<F, bool>) {
          return v ? "true" : "false";
        } else if constexpr (std::is_same_v<F, double>) {
          return detail::toml_double(v);
        } else if constexpr (std::is_same_v<F, std::string>) {
          return detail::toml_string(v);
        } else {
          return std::to_string(v);
        }
      },
      key.member);
}

inline std::string TrainConfig::value_text(std::string_view key) const {
  const Key* k = find_key(key);
  if (k == nullptr) detail::unknown_key(key, "value_text");
  return value_text(*k);
}

inline std::string TrainConfig::to_toml() const {
  std::string out = "# dagpt train_predictor configuration (every key; `key = value  # what it is`)\n";
  std::string group;
  for (const Key& k : keys()) {
    if (group != k.group) {
      group = k.group;
      out += fmt::format("\n# --- {} ---\n", group);
    }
    out += fmt::format("{} = {}  # {}\n", k.name, value_text(k), k.help);
  }
  return out;
}

inline TrainConfig TrainConfig::from_toml(std::string_view text, std::string_view source) {
  TrainConfig c;
  c.merge_toml(text, source);
  c.validate();
  return c;
}

inline TrainConfig TrainConfig::from_file(const std::filesystem::path& path) { return load(path, {}); }

inline TrainConfig TrainConfig::load(const std::optional<std::filesystem::path>& file,
                                     const std::vector<std::string>& overrides) {
  TrainConfig c;
  if (file) {
    std::ifstream in(*file, std::ios::binary);
    if (!in) dagpt::detail::raise<ConfigError>("{}: cannot open the config file", file->string());
    std::ostringstream text;
    text << in.rdbuf();
    c.merge_toml(text.str(), file->string());
  }
  for (const auto& o : overrides) c.apply_override(o);
  c.validate();
  return c;
}

}  // namespace dagpt::train
