// train_predictor: trains a DAG predictor (a small GPT that turns arithmetic text into DAG plans), evaluates
// it and shows its predictions.
//
//   train_predictor CONFIG.toml [--key=value ...]             train (configs/: tiny, demo, reference)
//   train_predictor CONFIG.toml --init_from=resume            continue the run in out_dir from its newest
//   checkpoint train_predictor CONFIG.toml --eval-only --init_from=PATH  evaluate a checkpoint: the table,
//   then examples
//
// Every key of the config can be overridden on the command line (--max_iters=100); the effective config is
// printed at start and saved as <out_dir>/config.toml. Ctrl-C stops after writing a checkpoint.
#include <cstdio>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "dagpt/train/trainer.hpp"

namespace {

const char* kUsage =
    "usage: train_predictor [CONFIG.toml] [--key=value ...]\n"
    "  --eval-only --init_from=CHECKPOINT   evaluate a checkpoint and show example predictions\n"
    "  --help                               this text and the list of keys\n";

std::vector<std::string> example_texts(const dagpt::train::Trainer& t) {
  std::vector<std::string> texts = {"2.0 * 3.0 + 4.0", "(3.0 + 4.0) * 2.0", "10.0 - 5.0 / 2.0",
                                    "-3 + 4.3213 * 2", "1.5 + 1.5",         "8.0 / -2.0"};
  // Plus validation expressions the model never trained on.
  auto o = t.config().stream_options(dagpt::expr::kValStream);
  o.batch_size = 6;
  o.prefetch = 0;
  const auto b = dagpt::data::make_batch(o, t.tokenizer(), 1000000);
  texts.insert(texts.end(), b.texts.begin(), b.texts.end());
  return texts;
}

}  // namespace

int main(int argc, char** argv) {
  std::optional<std::string> file;
  std::vector<std::string> overrides;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::cout << kUsage << "\nkeys (defaults):\n" << dagpt::train::TrainConfig{}.to_toml();
      return 0;
    }
    if (a.rfind("--", 0) == 0) {
      overrides.push_back(a);
    } else if (!file) {
      file = a;
    } else {
      std::cerr << "train_predictor: one config file only (got " << *file << " and " << a << ")\n" << kUsage;
      return 2;
    }
  }
  try {
    const auto cfg = dagpt::train::TrainConfig::load(file, overrides);
#ifdef _OPENMP
    if (cfg.threads > 0) omp_set_num_threads(cfg.threads);
#endif
    std::cout << "# effective config\n" << cfg.to_toml() << "\n";
    dagpt::train::Trainer trainer(cfg);
    if (!cfg.eval_only) trainer.run();
    const auto ev = trainer.evaluate();
    std::cout << "\n## evaluation at iteration " << trainer.iteration() << "\n\n";
    trainer.print_eval(ev, std::cout);
    std::cout << "\n## example predictions (last token)\n\n";
    trainer.print_examples(example_texts(trainer), std::cout);
    if (!cfg.eval_only) {
      std::cout << "\nrun directory: " << cfg.out_dir
                << " (metrics.jsonl, curves.svg, config.toml, checkpoints)\n";
    }
  } catch (const dagpt::Error& e) {
    std::cerr << "train_predictor: " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "train_predictor: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
