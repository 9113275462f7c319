// dagcalc: the command-line face of dagpt. Reads arithmetic expressions (arguments, or lines of stdin) and
// prints their exact values, normalized trees, DAG plans, executor values, DOT graphs or per-token prefixes.
//
//   dagcalc '2.5*3.0 + 1.0'                     8.5
//   dagcalc --plan --execute '10.0 - 2.0*3.0'   the value, the executor's value and the plan
//   dagcalc --generate 5 --seed 1 | dagcalc --json
//   dagcalc --model runs/demo/ckpt_00003000.safetensors '2.5*3.0 + 1.0'   a trained predictor's answer
//
// `dagcalc --help` lists every option. Exit status: 0 when every input was answered, 2 when some input
// failed (its error is reported, the other inputs are still answered), 1 for a bad command line.

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <iostream>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "dagpt/dag/decode.hpp"
#include "dagpt/dag/encode.hpp"
#include "dagpt/dag/executor.hpp"
#include "dagpt/dag/plan.hpp"
#include "dagpt/expr/expr.hpp"
#include "dagpt/text/char_tokenizer.hpp"
#include "dagpt/text/tokenizer.hpp"
#if DAGCALC_HAVE_GPT2
#include "dagpt/text/gpt2_bpe.hpp"
#endif
#if DAGCALC_HAVE_MODEL
#include "dagpt/train/trainer.hpp"
#endif

namespace {

namespace dag = dagpt::dag;
namespace expr = dagpt::expr;
namespace text = dagpt::text;
using Json = nlohmann::ordered_json;

constexpr std::string_view kUsage = R"usage(usage: dagcalc [options] [EXPR ...]
       dagcalc --generate N [--seed S] [--val] [--depth D] [--max-digits A] [--max-decimal-places B]

Answers each EXPR, or each line of standard input when no EXPR is given, in order. By default an answer is
the exact value of the expression, in its shortest round-trip form. Errors go to standard error (in text
mode) and the other inputs are still answered.

Output:
  --normalized            add the normalized tree, e.g. "normalized: Sub(10.0, Mul(2.0, 3.0))"
  --execute               add the DAG executor's value on the encoded plan, e.g. "executed: 4"
  --plan                  add the plan: V_mag, V_sign, the rows of O as {col:coef}, G, and the plan decoded
  --dot                   print a Graphviz graph of the plan instead (one digraph per input)
  --prefixes              add a table of the per-token prefixes: their repair, validity and value
  --json                  one JSON object per input, on one line (see below)
Model:
  --model CHECKPOINT      also ask a trained predictor (train_predictor's checkpoint): its value at the last
                          token, the relative error to the exact value; with --plan its predicted plan (instead
                          of the encoded one)
Semantics:
  --depth D               plan depth, 1..32 (default 4): D literal slots and D steps
  --reference             the reference's semantics: its normalizer (all-Float Sub/Div/Neg collapse), its
                          encoder and its executor (-2.0*-2.0 executes to -4)
Prefixes:
  --tokenizer char|gpt2   the tokenizer whose token boundaries cut the prefixes (default char)
  --bpe-dir DIR           the folder of GPT-2's encoder.json and vocab.bpe (default $DAGPT_GPT2_DIR)
Generator (prints N random expressions, one per line, and reads no input):
  --generate N            how many
  --seed S                default 0
  --val                   the validation stream (default: the training stream)
  --max-digits A          integer digits per number, 1..15 (default 4)
  --max-decimal-places B  decimal digits per number, 0..15 (default 4)

  -h, --help              this text
  --                      every later argument is an expression

An option takes its value as --key=value or --key value. An argument that starts with '-' is an option
only when a letter follows ("-h") or "--" and a letter ("--plan"); so dagcalc '-2.0*-2.0' evaluates.
The value is always exact; --reference changes what --normalized, --plan, --execute and --dot show.
--plan, --execute and --dot encode the expression: one that does not fit the depth is an error.

JSON, one line per input:
  {"input": "10.0 - 2.0*3.0", "value": 4.0, "normalized": "Sub(10.0, Mul(2.0, 3.0))",
   "executed": 4.0, "plan": {"V_mag": [...], "V_sign": [...], "O": [[...], ...], "G": [...],
   "decoded": "10 - 2*3"}, "dot": "digraph ...", "prefixes": [{"id", "token", "prefix", "valid",
   "repaired", "parsed", "value"}, ...]}      (executed, plan, dot, prefixes: when asked for)
  {"input": "1 + *2", "error": {"kind": "parse", "message": "...", "offset": 4}}
    kind: parse, evaluate (division by zero, overflow), encode (does not fit the depth) or tokenize;
    offset: the byte offset for parse errors, else null. With --prefixes, "prefixes" comes with errors too.
  --generate --json: {"index": 0, "stream": "train", "text": "...", "num_ops": 2, "value": ...}

Exit status: 0 every input answered, 2 some input failed, 1 a bad command line, unreadable BPE files or
an unexpected failure.
)usage";

// A command line that cannot run: its message is printed with the usage synopsis, exit status 1.
class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct Options {
  bool json = false;
  bool normalized = false;
  bool reference = false;
  bool plan = false;
  bool execute = false;
  bool dot = false;
  bool prefixes = false;
  bool help = false;
  int depth = 4;
  std::string tokenizer = "char";
  std::string bpe_dir;
  std::string model;                      // a checkpoint
  bool model_plan = false;                // --plan with --model: the predicted plan
  std::optional<std::uint64_t> generate;  // the number of expressions to generate
  std::uint64_t seed = 0;
  bool val = false;
  int max_digits = 4;
  int max_decimal_places = 4;
  std::vector<std::string> exprs;

  bool needs_plan() const { return plan || execute || dot; }
  dag::Semantics semantics() const { return reference ? dag::Semantics::reference : dag::Semantics::exact; }
};

bool is_letter(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

// "--plan", "--depth=4", "-h": an option. "-2.0*-2.0", "--5", "-(1)": an expression.
bool looks_like_option(std::string_view arg) {
  if (arg.size() >= 3 && arg[0] == '-' && arg[1] == '-') return is_letter(arg[2]);
  return arg.size() >= 2 && arg[0] == '-' && is_letter(arg[1]);
}

template <typename Int>
Int parse_integer(std::string_view name, std::string_view value, Int lo, Int hi) {
  Int v{};
  const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
  if (ec != std::errc() || end != value.data() + value.size() || v < lo || v > hi) {
    throw UsageError(fmt::format("option {} needs an integer in [{}, {}], got '{}'", name, lo, hi, value));
  }
  return v;
}

Options parse_options(int argc, char** argv) {
  Options o;
  std::set<std::string, std::less<>> given;
  bool only_exprs = false;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (only_exprs || !looks_like_option(arg)) {
      if (arg == "--" && !only_exprs) {
        only_exprs = true;
      } else {
        o.exprs.emplace_back(arg);
      }
      continue;
    }
    const std::size_t eq = arg.find('=');
    const std::string name(arg.substr(0, eq));
    std::optional<std::string> inline_value;
    if (eq != std::string_view::npos) inline_value = std::string(arg.substr(eq + 1));
    auto flag = [&](bool& target) {
      if (inline_value) throw UsageError(fmt::format("option {} takes no value", name));
      target = true;
    };
    auto value = [&]() -> std::string {
      if (inline_value) return *inline_value;
      if (i + 1 >= argc) throw UsageError(fmt::format("option {} needs a value", name));
      return argv[++i];
    };
    given.insert(name);
    if (name == "-h" || name == "--help") {
      flag(o.help);
    } else if (name == "--json") {
      flag(o.json);
    } else if (name == "--normalized") {
      flag(o.normalized);
    } else if (name == "--reference") {
      flag(o.reference);
    } else if (name == "--plan") {
      flag(o.plan);
    } else if (name == "--execute") {
      flag(o.execute);
    } else if (name == "--dot") {
      flag(o.dot);
    } else if (name == "--prefixes") {
      flag(o.prefixes);
    } else if (name == "--val") {
      flag(o.val);
    } else if (name == "--depth") {
      o.depth = parse_integer<int>(name, value(), 1, dag::kMaxDepth);
    } else if (name == "--tokenizer") {
      o.tokenizer = value();
      if (o.tokenizer != "char" && o.tokenizer != "gpt2") {
        throw UsageError(fmt::format("option --tokenizer is char or gpt2, got '{}'", o.tokenizer));
      }
    } else if (name == "--bpe-dir") {
      o.bpe_dir = value();
    } else if (name == "--model") {
      o.model = value();
    } else if (name == "--generate") {
      o.generate = parse_integer<std::uint64_t>(name, value(), 0, std::numeric_limits<std::uint64_t>::max());
    } else if (name == "--seed") {
      o.seed = parse_integer<std::uint64_t>(name, value(), 0, std::numeric_limits<std::uint64_t>::max());
    } else if (name == "--max-digits") {
      o.max_digits = parse_integer<int>(name, value(), 1, 15);
    } else if (name == "--max-decimal-places") {
      o.max_decimal_places = parse_integer<int>(name, value(), 0, 15);
    } else {
      throw UsageError(fmt::format("unknown option '{}'", name));
    }
  }
  if (o.help) return o;

  // Options that would be silently ignored are mistakes worth naming.
  auto only_with = [&given](std::initializer_list<const char*> names, bool ok, const char* with) {
    for (const char* n : names) {
      if (given.contains(n) && !ok) throw UsageError(fmt::format("option {} is only used with {}", n, with));
    }
  };
  only_with({"--seed", "--val", "--max-digits", "--max-decimal-places"}, o.generate.has_value(),
            "--generate");
  only_with({"--tokenizer", "--bpe-dir"}, o.prefixes, "--prefixes");
  if (o.generate) {
    if (!o.exprs.empty()) throw UsageError("--generate reads no expressions");
    for (const char* n : {"--normalized", "--reference", "--plan", "--execute", "--dot", "--prefixes"}) {
      if (given.contains(n)) {
        throw UsageError(fmt::format(
            "--generate only prints expressions (and with --json their values); pipe them into dagcalc {}",
            n));
      }
    }
  }
  if (!o.model.empty()) {
    if (o.generate) throw UsageError("--generate reads no expressions; --model answers expressions");
    if (o.dot || o.execute)
      throw UsageError(
          "--model shows the predicted plan with --plan; --dot and --execute show encoded plans");
    o.model_plan = o.plan;
    o.plan = false;
  }
  if (o.dot && !o.json && (o.plan || o.prefixes)) {
    throw UsageError("--dot prints only the graph; with --plan or --prefixes, add --json");
  }
  return o;
}

// ---------------------------------------------------------------------------------------------------------
// One input's answer.

struct Failure {
  std::string kind;  // parse, evaluate, encode, tokenize
  std::string message;
  std::optional<std::size_t> offset;  // parse errors only
};

struct PrefixRow {
  std::int64_t id = 0;
  std::string token;  // the token's own text
  expr::Prefix prefix;
};

struct Answer {
  std::string input;
  std::optional<Failure> error;
  double value = 0;
  std::string normalized;                    // to_debug of the normalized tree
  std::optional<dag::DagPlan<double>> plan;  // when the options need one
  std::vector<double> slots;                 // every slot's value under the chosen semantics (--dot)
  double executed = 0;
  std::optional<std::vector<PrefixRow>> prefixes;
  // --model: the predictor's answer at the last token.
  struct Predicted {
    double value = 0;
    double rel_error = 0;
    bool within = false;
    std::optional<dag::DagPlan<double>> plan;
    std::string note;  // why there is no prediction
  };
  std::optional<Predicted> predicted;
};

// The value of every slot: initial slots from V_mag and V_sign, step s from executing the plan cut after
// step s (the executor returns the last slot only).
std::vector<double> slot_values(const dag::DagPlan<double>& plan, dag::Semantics sem) {
  const int d = plan.depth();
  const int n = plan.nodes();
  const int n_init = n - d;
  const double* mag = plan.V_mag.data();
  const double* sign = plan.V_sign.data();
  std::vector<double> v;  // slot by slot
  v.reserve(static_cast<std::size_t>(n));
  for (int j = 0; j < n_init; ++j) v.push_back((sign[j] < 0 ? -1.0 : 1.0) * mag[j]);
  for (int s = 0; s < d; ++s) {
    const int m = n_init + s + 1;
    auto cut = dag::DagPlan<double>::zeros(dagpt::Shape{}, dag::Layout{s + 1, n_init});
    std::copy(mag, mag + m, cut.V_mag.data());
    std::copy(sign, sign + m, cut.V_sign.data());
    for (int r = 0; r <= s; ++r) {
      const double* row = plan.O.data() + static_cast<std::ptrdiff_t>(r) * n;
      std::copy(row, row + m, cut.O.data() + static_cast<std::ptrdiff_t>(r) * m);
    }
    std::copy(plan.G.data(), plan.G.data() + s + 1, cut.G.data());
    v.push_back(dag::execute_values(cut, sem).item());
  }
  return v;
}

std::vector<PrefixRow> token_prefixes(const std::string& input, const text::Tokenizer& tokenizer) {
  const std::vector<std::int64_t> ids = tokenizer.encode(input);
  std::vector<expr::Prefix> ps = expr::prefixes(input, tokenizer);
  std::vector<PrefixRow> rows;
  rows.reserve(ids.size());
  for (std::size_t i = 0; i < ids.size(); ++i) {
    rows.push_back({ids[i], tokenizer.decode(&ids[i], 1), std::move(ps[i])});
  }
  return rows;
}

// Parse -> evaluate -> normalize -> (encode -> execute); stops at the first failure.
void compute(Answer& a, const Options& o) {
  expr::Expr parsed;
  try {
    parsed = expr::parse(a.input);
  } catch (const expr::ParseError& e) {
    a.error = Failure{"parse", e.what(), e.offset()};
    return;
  }
  const expr::Value v = expr::evaluate(parsed);
  if (!v) {
    a.error = Failure{"evaluate", v.reason, std::nullopt};
    return;
  }
  a.value = v.value;
  const expr::Expr normalized = expr::normalize(parsed, {o.reference});
  a.normalized = expr::to_debug(normalized);
  if (!o.needs_plan()) return;
  try {
    a.plan = dag::encode(normalized, dag::Layout::reference(o.depth), {o.reference});
  } catch (const dag::EncodeError& e) {
    a.error = Failure{"encode", e.what(), std::nullopt};
    return;
  }
  a.executed = dag::execute_values(*a.plan, o.semantics()).item();
  if (o.dot) a.slots = slot_values(*a.plan, o.semantics());
}

Answer answer(const std::string& input, const Options& o, const text::Tokenizer* tokenizer) {
  Answer a;
  a.input = input;
  try {
    compute(a, o);
  } catch (const dagpt::Error& e) {  // not expected; reported with the input rather than ending the run
    a.error = Failure{"internal", e.what(), std::nullopt};
  }
  if (tokenizer != nullptr) {
    try {
      a.prefixes = token_prefixes(input, *tokenizer);
    } catch (const dagpt::Error& e) {
      if (!a.error) a.error = Failure{"tokenize", e.what(), std::nullopt};
    }
  }
  return a;
}

// ---------------------------------------------------------------------------------------------------------
// Printing.

std::string num(double x) { return fmt::format("{}", x); }

// A JSON string literal; invalid UTF-8 becomes U+FFFD instead of an exception.
std::string quoted(const std::string& s) {
  return Json(s).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// "[10, 2, 3, 0 | 0, 0, 0, 0]": the initial slots, then the step slots.
std::string slot_list(const double* v, int n, int n_init) {
  std::string out = "[";
  for (int j = 0; j < n; ++j) {
    if (j > 0) out += j == n_init ? " | " : ", ";
    out += num(v[j]);
  }
  return out + "]";
}

// "{0:1, 4:-1}": the nonzero coefficients of one row of O.
std::string o_row(const double* row, int n) {
  std::string out = "{";
  for (int j = 0; j < n; ++j) {
    if (row[j] == 0) continue;
    if (out.size() > 1) out += ", ";
    out += fmt::format("{}:{}", j, num(row[j]));
  }
  return out + "}";
}

std::string plan_text(const dag::DagPlan<double>& p) {
  const int d = p.depth();
  const int n = p.nodes();
  const int n_init = n - d;
  std::string out;
  auto line = [&out](std::string_view label, const std::string& body) {
    out += fmt::format("  {:<8}{}\n", label, body);
  };
  line("V_mag", slot_list(p.V_mag.data(), n, n_init));
  line("V_sign", slot_list(p.V_sign.data(), n, n_init));
  for (int s = 0; s < d; ++s) {
    line(fmt::format("O{}", s), o_row(p.O.data() + static_cast<std::ptrdiff_t>(s) * n, n));
  }
  std::string g = "[";
  for (int s = 0; s < d; ++s) g += (s > 0 ? ", " : "") + num(p.G.data()[s]);
  line("G", g + "]");
  line("decoded", expr::to_text(dag::decode(p)));
  return out;
}

Json plan_json(const dag::DagPlan<double>& p) {
  const int d = p.depth();
  const int n = p.nodes();
  Json o = Json::array();
  for (int s = 0; s < d; ++s) {
    const double* row = p.O.data() + static_cast<std::ptrdiff_t>(s) * n;
    o.push_back(std::vector<double>(row, row + n));
  }
  Json j;
  j["V_mag"] = p.V_mag.to_vector();
  j["V_sign"] = p.V_sign.to_vector();
  j["O"] = std::move(o);
  j["G"] = p.G.to_vector();
  j["decoded"] = expr::to_text(dag::decode(p));
  return j;
}

// Text inside a DOT string: quotes and backslashes escaped.
std::string dot_escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += (c == '\n' || c == '\r') ? ' ' : c;
  }
  return out;
}

// The plan as a graph: the initial slots that some step reads (boxes, with their values), every step
// (log or linear, with its value under the chosen semantics; the last one is the output) and an edge per
// nonzero coefficient of O, labelled with it.
std::string dot_graph(const Answer& a, const Options& o) {
  const auto& p = *a.plan;
  const int d = p.depth();
  const int n = p.nodes();
  const int n_init = n - d;
  const double* O = p.O.data();
  std::string label = dot_escape(fmt::format("{} = {}", a.input, num(a.value)));  // lines joined by DOT's \n
  if (o.normalized) label += "\\nnormalized: " + dot_escape(a.normalized);
  if (o.reference) label += "\\nreference semantics";
  std::string out = "digraph dag {\n";
  out += fmt::format("  graph [label=\"{}\", labelloc=t];\n", label);
  out += "  node [fontname=\"Helvetica\"];\n  edge [fontname=\"Helvetica\"];\n";
  for (int j = 0; j < n_init; ++j) {
    bool read = false;
    for (int s = 0; s < d; ++s) read = read || O[static_cast<std::ptrdiff_t>(s) * n + j] != 0;
    if (read) out += fmt::format("  n{} [shape=box, label=\"slot {}\\n{}\"];\n", j, j, num(a.slots[j]));
  }
  for (int s = 0; s < d; ++s) {
    const int id = n_init + s;
    out +=
        fmt::format("  n{} [label=\"step {}: {}\\n{}\"{}];\n", id, s, p.G.data()[s] >= 0.5 ? "linear" : "log",
                    num(a.slots[static_cast<std::size_t>(id)]), s == d - 1 ? ", peripheries=2" : "");
    for (int j = 0; j < id; ++j) {
      const double c = O[static_cast<std::ptrdiff_t>(s) * n + j];
      if (c != 0) out += fmt::format("  n{} -> n{} [label=\"{}\"];\n", j, id, num(c));
    }
  }
  return out + "}\n";
}

// The input line and a caret under byte `offset` (tabs kept so that the caret lines up).
std::string caret_lines(const std::string& input, std::optional<std::size_t> offset) {
  std::string shown = input;
  for (char& c : shown) {
    if (c == '\n' || c == '\r' || c == '\v' || c == '\f') c = ' ';
  }
  std::string out = shown + "\n";
  if (offset) {
    std::string pad;
    for (std::size_t i = 0; i < *offset && i < shown.size(); ++i) {
      const auto byte = static_cast<unsigned char>(shown[i]);
      if (shown[i] == '\t') {
        pad += '\t';
      } else if ((byte & 0xC0U) != 0x80U) {  // one column per UTF-8 character
        pad += ' ';
      }
    }
    out += pad + "^\n";
  }
  return out;
}

std::string prefix_table(const std::vector<PrefixRow>& rows) {
  std::vector<std::vector<std::string>> cells{{"#", "id", "token", "prefix", "status", "parsed", "value"}};
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const expr::Prefix& p = rows[i].prefix;
    const char* status = !p.valid ? "invalid" : (p.repaired ? "repaired" : "ok");
    cells.push_back({std::to_string(i), std::to_string(rows[i].id), quoted(rows[i].token), quoted(p.prefix),
                     status, p.valid ? p.parsed : "", p.valid ? num(p.value) : ""});
  }
  std::vector<std::size_t> width(cells[0].size(), 0);
  for (const auto& r : cells) {
    for (std::size_t c = 0; c < r.size(); ++c) width[c] = std::max(width[c], r[c].size());
  }
  std::string out;
  for (const auto& r : cells) {
    std::string line = " ";
    for (std::size_t c = 0; c < r.size(); ++c) {
      line += ' ';
      line += c < 2 ? fmt::format("{:>{}}", r[c], width[c]) : fmt::format("{:<{}}", r[c], width[c]);
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line + "\n";
  }
  return out;
}

Json prefixes_json(const std::vector<PrefixRow>& rows) {
  Json out = Json::array();
  for (const auto& r : rows) {
    Json j;
    j["id"] = r.id;
    j["token"] = r.token;
    j["prefix"] = r.prefix.prefix;
    j["valid"] = r.prefix.valid;
    j["repaired"] = r.prefix.repaired;
    j["parsed"] = r.prefix.valid ? Json(r.prefix.parsed) : Json(nullptr);
    j["value"] = r.prefix.valid ? Json(r.prefix.value) : Json(nullptr);
    out.push_back(std::move(j));
  }
  return out;
}

void print_text(const Answer& a, const Options& o) {
  if (a.error) {
    std::fflush(stdout);  // keep stdout and stderr in input order when both go to one place
    const std::string block =
        fmt::format("error: {}\n{}", a.error->message, caret_lines(a.input, a.error->offset));
    std::fputs(block.c_str(), stderr);
  } else if (o.dot) {
    std::fputs(dot_graph(a, o).c_str(), stdout);
  } else {
    std::string line = num(a.value);
    if (o.normalized) line += "  normalized: " + a.normalized;
    if (o.execute) line += "  executed: " + num(a.executed);
    line += '\n';
    if (a.predicted && a.predicted->note.empty()) {
      line.pop_back();
      line += fmt::format("  predicted: {}  relative error: {:.3g}{}\n", num(a.predicted->value),
                          a.predicted->rel_error, a.predicted->within ? "" : " (not within 1e-3)");
    } else if (a.predicted) {
      line.pop_back();
      line += "  predicted: none (" + a.predicted->note + ")\n";
    }
    if (o.plan) line += plan_text(*a.plan);
    if (o.model_plan && a.predicted && a.predicted->plan) line += plan_text(*a.predicted->plan);
    std::fputs(line.c_str(), stdout);
  }
  if (a.prefixes) std::fputs(prefix_table(*a.prefixes).c_str(), stdout);
}

void print_json(const Answer& a, const Options& o) {
  Json j;
  j["input"] = a.input;
  if (a.error) {
    Json e;
    e["kind"] = a.error->kind;
    e["message"] = a.error->message;
    e["offset"] = a.error->offset ? Json(*a.error->offset) : Json(nullptr);
    j["error"] = std::move(e);
  } else {
    j["value"] = a.value;
    j["normalized"] = a.normalized;
    if (o.execute) j["executed"] = a.executed;
    if (o.plan) j["plan"] = plan_json(*a.plan);
    if (a.predicted) {
      if (a.predicted->note.empty()) {
        j["predicted"] = a.predicted->value;
        j["relative_error"] = a.predicted->rel_error;
        j["within_1e-3"] = a.predicted->within;
        if (o.model_plan && a.predicted->plan) j["predicted_plan"] = plan_json(*a.predicted->plan);
      } else {
        j["predicted"] = nullptr;
        j["predicted_note"] = a.predicted->note;
      }
    }
    if (o.dot) j["dot"] = dot_graph(a, o);
  }
  if (a.prefixes) j["prefixes"] = prefixes_json(*a.prefixes);
  std::fputs((j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n").c_str(), stdout);
}

int run_generate(const Options& o) {
  expr::GeneratorOptions g;
  g.depth = o.depth;
  g.max_digits = o.max_digits;
  g.max_decimal_places = o.max_decimal_places;
  const std::uint64_t stream = o.val ? expr::kValStream : expr::kTrainStream;
  for (std::uint64_t i = 0; i < *o.generate; ++i) {
    const expr::Generated ex = expr::generate(o.seed, stream, i, g);
    if (!o.json) {
      std::fputs((ex.text + "\n").c_str(), stdout);
      continue;
    }
    const expr::Value v = expr::evaluate(ex.tree);
    Json j;
    j["index"] = i;
    j["stream"] = o.val ? "val" : "train";
    j["text"] = ex.text;
    j["num_ops"] = ex.num_ops;
    j["value"] = v ? Json(v.value) : Json(nullptr);
    std::fputs((j.dump() + "\n").c_str(), stdout);
  }
  return 0;
}

std::unique_ptr<text::Tokenizer> make_tokenizer(const Options& o) {
  if (!o.prefixes) return nullptr;
  if (o.tokenizer == "char") return std::make_unique<text::CharTokenizer>();
#if DAGCALC_HAVE_GPT2
  std::string dir = o.bpe_dir;
  if (dir.empty()) {
    const char* env = std::getenv("DAGPT_GPT2_DIR");
    if (env == nullptr || *env == '\0') {
      throw UsageError(
          "--tokenizer gpt2 needs --bpe-dir DIR (or $DAGPT_GPT2_DIR): the folder of encoder.json and "
          "vocab.bpe (scripts/fetch-gpt2-bpe.sh fetches them)");
    }
    dir = env;
  }
  return std::make_unique<text::Gpt2Bpe>(text::Gpt2Bpe::from_directory(dir));
#else
  throw UsageError(
      "this dagcalc was built without dagpt::text (nlohmann_json + utf8proc): no --tokenizer gpt2");
#endif
}

// The whole program; main only adds a last-resort handler.
int run(int argc, char** argv) {
  Options o;
  std::unique_ptr<text::Tokenizer> tokenizer;
  try {
    o = parse_options(argc, argv);
    if (o.help) {
      std::fputs(kUsage.data(), stdout);
      return 0;
    }
    if (o.generate) return run_generate(o);
    tokenizer = make_tokenizer(o);
  } catch (const UsageError& e) {
    const std::string_view synopsis = kUsage.substr(0, kUsage.find("\n\n") + 1);
    fmt::print(stderr, "dagcalc: {}\n{}Run 'dagcalc --help' for every option.\n", e.what(), synopsis);
    return 1;
  } catch (const dagpt::Error& e) {  // unreadable BPE files, generator options out of range
    fmt::print(stderr, "dagcalc: {}\n", e.what());
    return 1;
  }

#if DAGCALC_HAVE_MODEL
  std::unique_ptr<dagpt::train::Trainer> model;
  if (!o.model.empty()) {
    try {
      const dagpt::io::Checkpoint ck = dagpt::io::load_checkpoint(o.model);
      auto cfg = dagpt::train::TrainConfig::from_toml(ck.field("config", o.model), o.model + " (config)");
      cfg.eval_only = true;
      cfg.init_from = o.model;
      std::ostringstream quiet;
      model = std::make_unique<dagpt::train::Trainer>(cfg, quiet);
      model->model().eval();
    } catch (const dagpt::Error& e) {
      fmt::print(stderr, "dagcalc: --model {}: {}\n", o.model, e.what());
      return 1;
    }
  }
#else
  if (!o.model.empty()) {
    fmt::print(stderr, "dagcalc: this dagcalc was built without dagpt::train: no --model\n");
    return 1;
  }
#endif

  bool failed = false;
  auto handle = [&](const std::string& input) {
    Answer a = answer(input, o, tokenizer.get());
#if DAGCALC_HAVE_MODEL
    if (model && !a.error) {
      const auto p = dagpt::train::predict(model->model(), model->tokenizer(), {input},
                                           model->config().loss_mode == "reference")[0];
      Answer::Predicted pr;
      if (p.tokens == 0 || p.tokens > model->config().block_size) {
        pr.note = p.note;
      } else {
        pr.value = p.predicted;
        pr.rel_error = p.rel_error();
        pr.within = p.within();
        pr.plan = p.plan.to<double>();
      }
      a.predicted = std::move(pr);
    }
#endif
    failed = failed || a.error.has_value();
    if (o.json) {
      print_json(a, o);
    } else {
      print_text(a, o);
    }
  };
  if (!o.exprs.empty()) {
    for (const auto& e : o.exprs) handle(e);
  } else {
    std::string line;
    while (std::getline(std::cin, line)) {
      if (!line.empty() && line.back() == '\r') line.pop_back();  // CRLF input
      handle(line);
    }
  }
  std::fflush(stdout);
  return failed ? 2 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {  // out of memory, an unwritable stdout: nothing an input did
    std::fflush(stdout);
    fmt::print(stderr, "dagcalc: {}\n", e.what());
    return 1;
  }
}
