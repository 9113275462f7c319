// Tests of include/dagpt/train/config.hpp: TOML parsing, --key=value overrides, every class of error with its
// message (unknown keys with a suggestion, wrong types, disallowed strings, impossible values, syntax), the
// to_toml round trip, and the shipped configs of examples/train_predictor/configs.
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <string>

#include "dagpt/train/config.hpp"

#ifndef DAGPT_SOURCE_DIR
#error "tests/CMakeLists.txt passes the repository root as DAGPT_SOURCE_DIR"
#endif

namespace {

namespace fs = std::filesystem;
using Catch::Matchers::Contains;
using Catch::Matchers::Equals;
using dagpt::train::ConfigError;
using dagpt::train::TrainConfig;

fs::path config_dir() { return fs::path(DAGPT_SOURCE_DIR) / "examples" / "train_predictor" / "configs"; }

// The message of the ConfigError that f throws ("" if none).
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

std::string toml_error(const std::string& text) {
  return error_of([&] { TrainConfig::from_toml(text, "cfg.toml"); });
}

std::string override_error(const std::string& arg) {
  return error_of([&] { TrainConfig::load(std::nullopt, {arg}); });
}

}  // namespace

TEST_CASE("config: defaults are valid and are the reference's predictor run", "[train][config]") {
  const TrainConfig c;
  CHECK_NOTHROW(c.validate());
  CHECK(c.n_layer == 2);
  CHECK(c.n_embd == 256);
  CHECK(c.batch_size == 256);
  CHECK(c.exec_loss_weight == 0.01);
  CHECK(c.g_loss_weight == 1.0);
  CHECK(c.tokenizer == "gpt2");
  CHECK(c.sources.empty());
}

TEST_CASE("config: a TOML file sets keys and remembers where", "[train][config]") {
  const TrainConfig c = TrainConfig::from_toml(
      "# comment\n"
      "n_layer = 3\n"
      "n_head = 2\n"
      "n_embd = 64\n"
      "tokenizer = \"char\"\n"
      "learning_rate = 1\n"     // an integer is a fine float
      "warmup_iters = 200.0\n"  // an integral float is a fine integer (the reference writes 200.0)
      "bias = false\n"
      "out_dir = 'runs/x \"y\"'\n",  // literal strings too
      "cfg.toml");
  CHECK(c.n_layer == 3);
  CHECK(c.n_embd == 64);
  CHECK(c.tokenizer == "char");
  CHECK(c.learning_rate == 1.0);
  CHECK(c.warmup_iters == 200);
  CHECK_FALSE(c.bias);
  CHECK(c.out_dir == "runs/x \"y\"");
  CHECK(c.sources.at("n_layer") == "cfg.toml:2");
  CHECK(c.sources.at("out_dir") == "cfg.toml:9");
  CHECK(c.sources.count("dropout") == 0);
}

TEST_CASE("config: --key=value overrides", "[train][config]") {
  const TrainConfig c = TrainConfig::load(
      std::nullopt, {"--n_layer=3", "--dropout=0.25", "--tokenizer=char", "--bias=no", "--eval-only",
                     "--decay_lr=0", "--max_iters=1e4", "--learning_rate=+2e-3", "enable_exec=OFF",
                     "--init_from=runs/a/ckpt_100.safetensors", "--seed=7", "--always_save_checkpoint=Yes"});
  CHECK(c.n_layer == 3);
  CHECK(c.dropout == 0.25);
  CHECK(c.tokenizer == "char");
  CHECK_FALSE(c.bias);
  CHECK(c.eval_only);
  CHECK_FALSE(c.decay_lr);
  CHECK(c.max_iters == 10000);
  CHECK(c.learning_rate == 2e-3);
  CHECK_FALSE(c.enable_exec);
  CHECK(c.init_from == "runs/a/ckpt_100.safetensors");
  CHECK(c.seed == 7);
  CHECK(c.always_save_checkpoint);
  CHECK(c.sources.at("eval_only") == "--eval-only");
  CHECK(c.sources.at("n_layer") == "--n_layer=3");

  SECTION("overrides come after the file, and the last one wins") {
    const fs::path file = fs::temp_directory_path() / "dagpt_config_test_override.toml";
    std::ofstream(file) << "n_layer = 5\nn_head = 8\n";
    const TrainConfig d = TrainConfig::load(file, {"--n_layer=6", "--n_layer=7"});
    CHECK(d.n_layer == 7);
    CHECK(d.n_head == 8);
    CHECK(d.sources.at("n_head") == file.string() + ":2");
    fs::remove(file);
  }
}

TEST_CASE("config: unknown keys suggest the closest known key", "[train][config]") {
  CHECK_THAT(toml_error("n_layer = 2\nn_layers = 3\n"),
             Equals("cfg.toml:2: unknown key 'n_layers'; did you mean 'n_layer'?"));
  CHECK_THAT(toml_error("lerning_rate = 0.1"), Contains("did you mean 'learning_rate'?"));
  CHECK_THAT(toml_error("wandb_project = 'x'"),
             Contains("unknown key 'wandb_project'; the keys are: name, out_dir"));
  CHECK_THAT(override_error("--n-heads=4"),
             Equals("--n-heads=4: unknown key 'n_heads'; did you mean 'n_head'?"));
  CHECK_THAT(toml_error("[model]\nn_layer = 2\n"),
             Equals("cfg.toml:1: [model] is a table; dagpt configs are flat `key = value` lines"));
}

TEST_CASE("config: values of the wrong type", "[train][config]") {
  CHECK_THAT(toml_error("\n\nn_layer = \"two\""),
             Equals("cfg.toml:3: n_layer must be an integer, got the string \"two\""));
  CHECK_THAT(toml_error("n_layer = 2.5"),
             Equals("cfg.toml:1: n_layer must be an integer, got the float 2.5"));
  CHECK_THAT(toml_error("bias = 1"), Equals("cfg.toml:1: bias must be true or false, got the integer 1"));
  CHECK_THAT(toml_error("learning_rate = 'fast'"),
             Equals("cfg.toml:1: learning_rate must be a number, got the string \"fast\""));
  CHECK_THAT(toml_error("tokenizer = 5"),
             Equals("cfg.toml:1: tokenizer must be one of the strings, got the integer 5"));
  CHECK_THAT(toml_error("name = ['a']"), Equals("cfg.toml:1: name must be a string, got an array"));
  CHECK_THAT(toml_error("n_layer = 99999999999"),
             Equals("cfg.toml:1: n_layer = 99999999999 does not fit a 32-bit integer"));
  CHECK_THAT(override_error("--n_layer=abc"), Equals("--n_layer=abc: n_layer must be an integer, got 'abc'"));
  CHECK_THAT(override_error("--n_layer=2.5"), Contains("must be an integer, got '2.5'"));
  CHECK_THAT(override_error("--bias=maybe"),
             Equals("--bias=maybe: bias must be true/false (or 1/0, yes/no, on/off), got 'maybe'"));
  CHECK_THAT(override_error("--dropout=lots"),
             Equals("--dropout=lots: dropout must be a number, got 'lots'"));
  CHECK_THAT(override_error("--n_layer"), Equals("--n_layer: n_layer needs a value: --n_layer=..."));
  CHECK_THAT(override_error("--=3"), Contains("expected --key=value"));
}

TEST_CASE("config: strings outside their allowed set", "[train][config]") {
  CHECK_THAT(toml_error("tokenizer = \"bpe\""),
             Equals("cfg.toml:1: tokenizer = \"bpe\" is not allowed; use \"gpt2\" or \"char\""));
  CHECK_THAT(override_error("--loss_mode=seed"),
             Equals("--loss_mode=seed: loss_mode = 'seed' is not allowed; use \"default\" or \"reference\""));
  CHECK_THAT(override_error("--mag_head=logits"), Contains("use \"direct\" or \"digits\""));
  CHECK_THAT(override_error("--layout=wide"), Contains("use \"reference\" or \"head\""));
}

TEST_CASE("config: impossible values name the key, its source and what is allowed", "[train][config]") {
  CHECK_THAT(
      toml_error("n_embd = 100\nn_head = 3\n"),
      Equals("cfg.toml:1: n_embd = 100 must be a multiple of n_head = 3 (cfg.toml:2); e.g. n_embd = 102"));
  CHECK_THAT(override_error("--dag_depth=0"),
             Equals("--dag_depth=0: dag_depth = 0 is out of range; allowed: 1 .. 32"));
  CHECK_THAT(override_error("--dag_depth=33"), Contains("dag_depth = 33 is out of range; allowed: 1 .. 32"));
  CHECK_THAT(override_error("--block_size=0"),
             Equals("--block_size=0: block_size = 0 is out of range; allowed: >= 1"));
  CHECK_THAT(override_error("--batch_size=-4"), Contains("batch_size = -4 is out of range; allowed: >= 1"));
  CHECK_THAT(
      override_error("--warmup_iters=20000"),
      Equals("--warmup_iters=20000: warmup_iters = 20000 must not exceed lr_decay_iters = 10000 (default) "
             "when decay_lr is true"));
  CHECK_NOTHROW(TrainConfig::load(std::nullopt, {"--warmup_iters=20000", "--decay_lr=false"}));
  CHECK_THAT(override_error("--min_lr=0.1"),
             Equals("--min_lr=0.1: min_lr = 0.1 must not exceed learning_rate = 0.0003 (default)"));
  CHECK_THAT(override_error("--dropout=1"),
             Equals("--dropout=1: dropout = 1.0 is out of range; allowed: 0 <= value < 1"));
  CHECK_THAT(override_error("--dropout=-0.1"), Contains("dropout = -0.1 is out of range"));
  CHECK_THAT(override_error("--beta2=1.0"), Contains("beta2 = 1.0 is out of range; allowed: 0 <= value < 1"));
  CHECK_THAT(override_error("--learning_rate=0"),
             Contains("learning_rate = 0.0 is out of range; allowed: a finite number > 0"));
  CHECK_THAT(override_error("--grad_clip=nan"), Contains("grad_clip = nan is out of range"));
  CHECK_THAT(override_error("--max_digits=16"),
             Contains("max_digits = 16 is out of range; allowed: 1 .. 15"));
  CHECK_THAT(override_error("--out_dir="), Equals("--out_dir=: out_dir = \"\" must not be empty"));
  CHECK_THAT(error_of([] {
               TrainConfig::load(std::nullopt, {"--enable_vmag=0", "--enable_vsign=0", "--enable_o=0",
                                                "--enable_g=0", "--enable_exec=0"});
             }),
             Contains("every loss is off"));
}

TEST_CASE("config: TOML syntax errors and missing files name the file", "[train][config]") {
  CHECK_THAT(toml_error("n_layer = 2\nn_head = = 3\n"), Contains("cfg.toml:2:"));
  CHECK_THAT(toml_error("n_layer = 2\nn_layer = 3\n"), Contains("cfg.toml:2:"));  // redefinition
  CHECK_THAT(error_of([] { TrainConfig::from_file("/nonexistent/dagpt.toml"); }),
             Equals("/nonexistent/dagpt.toml: cannot open the config file"));
}

TEST_CASE("config: to_toml parses back to the same config", "[train][config]") {
  TrainConfig c;
  CHECK(TrainConfig::from_toml(c.to_toml()) == c);
  c.name = "odd \"name\" with \\ and \t tab";
  c.learning_rate = 3e-4;
  c.min_lr = 1e-10;
  c.dropout = 0.1;
  c.max_iters = 123456789012;
  c.tokenizer = "char";
  c.eval_only = true;
  c.exec_loss_weight = 0.3333333333333333;
  const TrainConfig back = TrainConfig::from_toml(c.to_toml(), "effective.toml");
  CHECK(back == c);
  CHECK(back.name == c.name);
  CHECK(back.min_lr == 1e-10);
  TrainConfig other = c;
  other.n_layer = 9;
  CHECK(other != c);
  CHECK_THAT(c.to_toml(), Contains("n_layer = 2  # transformer blocks"));
  CHECK_THAT(c.to_toml(), Contains("\n# --- optim ---\n"));
}

TEST_CASE("config: the shipped configs load, validate and round trip", "[train][config]") {
  for (const char* name : {"tiny", "demo", "reference"}) {
    INFO(name);
    const TrainConfig c = TrainConfig::from_file(config_dir() / (std::string(name) + ".toml"));
    CHECK(c.name == name);
    CHECK(TrainConfig::from_toml(c.to_toml()) == c);
  }
  const TrainConfig tiny = TrainConfig::from_file(config_dir() / "tiny.toml");
  CHECK(tiny.tokenizer == "char");
  CHECK(tiny.max_iters <= 50);
  const TrainConfig demo = TrainConfig::from_file(config_dir() / "demo.toml");
  CHECK(demo.tokenizer == "char");
  CHECK(demo.dag_depth == 4);
  const TrainConfig ref = TrainConfig::from_file(config_dir() / "reference.toml");  // REFERENCE §7.1
  CHECK(ref.n_layer == 2);
  CHECK(ref.n_head == 4);
  CHECK(ref.n_embd == 256);
  CHECK(ref.dropout == 0.1);
  CHECK(ref.bias);
  CHECK(ref.batch_size == 256);
  CHECK(ref.block_size == 32);
  CHECK(ref.learning_rate == 3e-4);
  CHECK(ref.min_lr == 2e-4);
  CHECK(ref.warmup_iters == 200);
  CHECK(ref.max_iters == 10000);
  CHECK(ref.weight_decay == 0.01);
  CHECK(ref.eval_interval == 20);
  CHECK(ref.tokenizer == "gpt2");
}

TEST_CASE("config: the data stream options follow the config", "[train][config]") {
  const TrainConfig c =
      TrainConfig::load(std::nullopt, {"--batch_size=8", "--block_size=16", "--dag_depth=3", "--layout=head",
                                       "--loss_mode=reference", "--seed=9"});
  const auto o = c.stream_options(dagpt::expr::kValStream);
  CHECK(o.batch_size == 8);
  CHECK(o.block_size == 16);
  CHECK(o.depth == 3);
  CHECK(o.plan_layout().n_init == 4);
  CHECK(o.reference);
  CHECK(o.seed == 9);
  CHECK(o.stream == dagpt::expr::kValStream);
}
