// The training loop of REFERENCE.md §7.2 with its bugs fixed (a new batch for every micro-step, losses
// accumulated over micro-steps, decay groups), evaluation (the model issue's metrics on a fixed validation
// set, at every valid token and at the last one, plus the REFERENCE.md §8.2 held-out segments at the last
// token), logging (a live progress line on a terminal, plain lines otherwise, every metric to
// <out_dir>/metrics.jsonl, loss and accuracy curves to <out_dir>/curves.svg), crash-safe checkpoints
// (io/checkpoint.hpp) with exact resume, and Ctrl-C that stops after saving a checkpoint.
#pragma once

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <regex>
#include <string>
#include <vector>

#include "dagpt/dag/loss.hpp"
#include "dagpt/dag/model.hpp"
#include "dagpt/data/stream.hpp"
#include "dagpt/io/checkpoint.hpp"
#include "dagpt/optim/adamw.hpp"
#include "dagpt/text/char_tokenizer.hpp"
#include "dagpt/text/gpt2_bpe.hpp"
#include "dagpt/train/config.hpp"
#include "dagpt/train/heldout.hpp"

namespace dagpt::train {

// ---------------------------------------------------------------------------------------------------
// Pieces built from a TrainConfig.

inline std::unique_ptr<text::Tokenizer> make_tokenizer(const TrainConfig& c) {
  if (c.tokenizer == "char") return std::make_unique<text::CharTokenizer>();
  std::filesystem::path dir = c.bpe_dir;
  if (dir.empty()) {
    const char* env = std::getenv("DAGPT_GPT2_DIR");
    dir = env ? env : ".cache/gpt2";
  }
  return std::make_unique<text::Gpt2Bpe>(text::Gpt2Bpe::from_directory(dir));
}

// GPT-2's 50257 tokens padded to 50304 (a multiple of 64), as the reference; the char tokenizer's own size.
inline std::int64_t model_vocab(const TrainConfig& c, const text::Tokenizer& tok) {
  return c.tokenizer == "gpt2" ? 50304 : tok.vocab_size();
}

inline dag::ModelConfig model_config(const TrainConfig& c, std::int64_t vocab) {
  dag::ModelConfig m;
  m.gpt = {vocab, c.block_size, c.n_layer, c.n_head, c.n_embd, c.dropout, c.bias};
  m.dag_depth = c.dag_depth;
  m.head_layout = c.layout == "head";
  m.semantics = c.loss_mode == "reference" ? dag::Semantics::reference : dag::Semantics::exact;
  m.mag_head = c.mag_head == "digits" ? dag::MagHead::digits : dag::MagHead::direct;
  m.ste = c.ste;
  m.sharpen_eval = c.sharpen_eval;
  m.digits = {c.max_digits, c.max_decimal_places};
  return m;
}

inline dag::LossOptions loss_options(const TrainConfig& c) {
  dag::LossOptions o = c.loss_mode == "reference" ? dag::LossOptions::reference() : dag::LossOptions{};
  if (c.loss_mode != "reference") {
    o.w_exec = c.exec_loss_weight;
    o.w_g = c.g_loss_weight;
  }
  o.enable_vmag = c.enable_vmag;
  o.enable_vsign = c.enable_vsign;
  o.enable_o = c.enable_o;
  o.enable_g = c.enable_g;
  o.enable_exec = c.enable_exec;
  o.digit_format = {c.max_digits, c.max_decimal_places};
  return o;
}

inline optim::LrSchedule lr_schedule(const TrainConfig& c) {
  optim::LrSchedule s;
  s.lr = c.learning_rate;
  s.min_lr = c.min_lr;
  s.warmup_iters = static_cast<double>(c.warmup_iters);
  s.lr_decay_iters = static_cast<double>(c.lr_decay_iters);
  s.decay_lr = c.decay_lr;
  s.cyclical = c.use_cyclical_lr;
  s.cycle_period = static_cast<double>(c.cyclical_lr_period);
  s.cycle_amplitude = c.cyclical_lr_amplitude;
  return s;
}

// ---------------------------------------------------------------------------------------------------
// Predictions at the last token of whole texts.

struct Prediction {
  std::string text;
  std::int64_t tokens = 0;
  bool exact_known = false;  // the text parses and evaluates
  double exact = 0;
  bool fits = false;  // its plan fits the model's depth (then `target` holds it)
  double predicted = 0;
  dag::DagPlan<float> plan;    // the predicted plan at the last token
  dag::DagPlan<float> target;  // the encoded plan (when fits)
  std::string note;            // why something is missing
  double rel_error() const { return std::abs(predicted - exact) / std::max(std::abs(exact), 1e-8); }
  bool within(double tol = 1e-3) const {
    return exact_known && std::isfinite(predicted) &&
           (std::abs(predicted - exact) < tol || rel_error() < tol);
  }
};

inline std::vector<Prediction> predict(const dag::PredictorModel<float>& model, const text::Tokenizer& tok,
                                       const std::vector<std::string>& texts,
                                       bool reference_encoding = false) {
  const auto& mc = model.config();
  const std::int64_t T = mc.gpt.block_size;
  const dag::Layout layout = mc.layout();
  std::vector<Prediction> out(texts.size());
  std::vector<std::int64_t> rows;
  std::vector<std::vector<std::int64_t>> ids(texts.size());
  for (std::size_t i = 0; i < texts.size(); ++i) {
    Prediction& p = out[i];
    p.text = texts[i];
    ids[i] = tok.encode(texts[i]);
    p.tokens = static_cast<std::int64_t>(ids[i].size());
    try {
      const expr::Expr e = expr::parse(texts[i]);
      const expr::Value v = expr::evaluate(e);
      p.exact_known = v.valid;
      p.exact = v.value;
      if (!v.valid) p.note = "does not evaluate to a finite value";
      const expr::Expr n = expr::normalize(e, {reference_encoding});
      try {
        p.target = dag::encode<float>(n, layout, dag::EncodeOptions{reference_encoding});
        p.fits = true;
      } catch (const dag::EncodeError& err) {
        p.note = err.what();
      }
    } catch (const expr::ParseError& err) {
      p.note = err.what();
    }
    if (p.tokens == 0) {
      p.note = "empty text";
    } else if (p.tokens > T) {
      p.note = fmt::format("{} tokens; block_size is {}", p.tokens, T);
    } else {
      rows.push_back(static_cast<std::int64_t>(i));
    }
  }
  if (rows.empty()) return out;
  auto batch = Tensor<std::int64_t>::full({static_cast<std::int64_t>(rows.size()), T}, tok.pad_id());
  std::int64_t Tmax = 1;
  for (std::size_t r = 0; r < rows.size(); ++r) {
    const auto& v = ids[static_cast<std::size_t>(rows[r])];
    std::copy(v.begin(), v.end(), batch.data() + static_cast<std::int64_t>(r) * T);
    Tmax = std::max<std::int64_t>(Tmax, static_cast<std::int64_t>(v.size()));
  }
  batch = batch.narrow(1, 0, Tmax).contiguous();
  NoGradGuard no_grad;
  const auto res = model(batch);
  const dag::DagPlan<float> plan = res.plan.values();
  const int d = layout.depth, n = layout.nodes();
  for (std::size_t r = 0; r < rows.size(); ++r) {
    Prediction& p = out[static_cast<std::size_t>(rows[r])];
    const std::int64_t at = static_cast<std::int64_t>(r) * Tmax + p.tokens - 1;
    p.predicted = res.exec.value().data()[at];
    p.plan = dag::DagPlan<float>::zeros({}, layout);
    std::copy_n(plan.V_mag.data() + at * n, n, p.plan.V_mag.data());
    std::copy_n(plan.V_sign.data() + at * n, n, p.plan.V_sign.data());
    std::copy_n(plan.O.data() + at * d * n, d * n, p.plan.O.data());
    std::copy_n(plan.G.data() + at * d, d, p.plan.G.data());
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------

struct EvalResult {
  std::array<double, 6> loss{};  // mean of the validation batches' components (kLossNames order)
  dag::PlanMetrics all;          // every valid token of the validation set
  dag::PlanMetrics last;         // the last valid token of every validation row
  struct Segment {
    std::string name;
    int total = 0, scored = 0, within = 0, exact = 0;
  };
  std::vector<Segment> heldout;  // REFERENCE.md §8.2 segments, scored where the plan fits the depth
  int heldout_scored = 0, heldout_within = 0, heldout_exact = 0;
  double heldout_within_rate() const {
    return heldout_scored ? static_cast<double>(heldout_within) / heldout_scored : 0;
  }
};

namespace detail {

inline std::atomic<bool>& stop_flag() {
  static std::atomic<bool> flag{false};
  return flag;
}
extern "C" inline void on_sigint(int) { stop_flag().store(true); }

inline std::string duration_text(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  const auto t = static_cast<long long>(s + 0.5);
  if (t >= 3600) return fmt::format("{}h{:02}m", t / 3600, (t / 60) % 60);
  if (t >= 60) return fmt::format("{}m{:02}s", t / 60, t % 60);
  return fmt::format("{}s", t);
}

// JSON number (finite) or null.
inline std::string jnum(double v) {
  return std::isfinite(v) ? fmt::format("{:.6g}", v) : std::string("null");
}

// A small line chart as SVG: series of (x, y) with a label and colour, y on a log scale when asked.
struct Series {
  std::string label, colour;
  std::vector<std::pair<double, double>> points;
};
inline std::string svg_panel(const std::vector<Series>& series, const std::string& title, bool log_y,
                             double x0, double y0, double w, double h) {
  double xmin = 1e300, xmax = -1e300, ymin = 1e300, ymax = -1e300;
  auto ty = [&](double y) { return log_y ? std::log10(std::max(y, 1e-12)) : y; };
  for (const auto& s : series) {
    for (auto [x, y] : s.points) {
      if (!std::isfinite(y)) continue;
      xmin = std::min(xmin, x), xmax = std::max(xmax, x);
      ymin = std::min(ymin, ty(y)), ymax = std::max(ymax, ty(y));
    }
  }
  std::string o = fmt::format(R"(<g><rect x="{}" y="{}" width="{}" height="{}" fill="none" stroke="#999"/>)"
                              R"(<text x="{}" y="{}" font-size="13" font-family="sans-serif">{}</text>)",
                              x0, y0, w, h, x0 + 4, y0 - 6, title);
  if (xmin > xmax) return o + "</g>";
  if (xmax == xmin) xmax = xmin + 1;
  if (ymax == ymin) ymax = ymin + 1;
  auto px = [&](double x) { return x0 + (x - xmin) / (xmax - xmin) * w; };
  auto py = [&](double y) { return y0 + h - (ty(y) - ymin) / (ymax - ymin) * h; };
  o +=
      fmt::format(R"(<text x="{}" y="{}" font-size="10" font-family="sans-serif">{}</text>)", x0 + 2, y0 + 10,
                  log_y ? fmt::format("{:.3g}", std::pow(10.0, ymax)) : fmt::format("{:.3g}", ymax));
  o += fmt::format(R"(<text x="{}" y="{}" font-size="10" font-family="sans-serif">{}</text>)", x0 + 2,
                   y0 + h - 2,
                   log_y ? fmt::format("{:.3g}", std::pow(10.0, ymin)) : fmt::format("{:.3g}", ymin));
  o += fmt::format(R"(<text x="{}" y="{}" font-size="10" font-family="sans-serif">iteration {:.0f}</text>)",
                   x0 + w - 90, y0 + h + 12, xmax);
  int k = 0;
  for (const auto& s : series) {
    std::string pts;
    for (auto [x, y] : s.points) {
      if (std::isfinite(y)) pts += fmt::format("{:.1f},{:.1f} ", px(x), py(y));
    }
    o += fmt::format(R"(<polyline fill="none" stroke="{}" stroke-width="1.5" points="{}"/>)", s.colour, pts);
    o += fmt::format(R"(<text x="{}" y="{}" font-size="11" font-family="sans-serif" fill="{}">{}</text>)",
                     x0 + w + 8, y0 + 14 + 14 * k++, s.colour, s.label);
  }
  return o + "</g>";
}

}  // namespace detail

class Trainer {
 public:
  // Builds everything from the (validated) config and applies init_from. Log lines go to `log`.
  explicit Trainer(TrainConfig cfg, std::ostream& log = std::cout) : cfg_(std::move(cfg)), log_(log) {
    cfg_.validate();
    tok_ = make_tokenizer(cfg_);
    const dag::ModelConfig mc = model_config(cfg_, model_vocab(cfg_, *tok_));
    model_ = std::make_unique<dag::PredictorModel<float>>(mc, static_cast<std::uint64_t>(cfg_.seed));
    optim::AdamWOptions ao;
    ao.lr = cfg_.learning_rate;
    ao.beta1 = cfg_.beta1;
    ao.beta2 = cfg_.beta2;
    ao.weight_decay = cfg_.weight_decay;
    ao.decay = cfg_.decay_all_params ? optim::DecayRule::all : optim::DecayRule::matrices;
    opt_ = std::make_unique<optim::AdamW<float>>(model_->named_parameters(), ao);
    sched_ = lr_schedule(cfg_);
    loss_ = loss_options(cfg_);
    init_from();
    if (!cfg_.eval_only) {
      train_ = std::make_unique<data::DagStream>(cfg_.stream_options(expr::kTrainStream), *tok_);
      train_->seek(data_position_);
    }
  }

  dag::PredictorModel<float>& model() { return *model_; }
  const text::Tokenizer& tokenizer() const { return *tok_; }
  std::int64_t iteration() const { return iter_; }
  const TrainConfig& config() const { return cfg_; }

  // FNV-1a over every parameter's bytes (what an exact resume must reproduce).
  std::string parameter_checksum() const {
    std::map<std::string, Tensor<float>> m;
    for (auto& [name, p] : model_->named_parameters()) m.emplace(name, p.value());
    return io::detail::checksum_of(m);
  }

  // Trains until max_iters (or Ctrl-C), evaluating every eval_interval iterations.
  void run() {
    namespace fs = std::filesystem;
    fs::create_directories(cfg_.out_dir);
    { std::ofstream(fs::path(cfg_.out_dir) / "config.toml") << cfg_.to_toml(); }
    metrics_.open(fs::path(cfg_.out_dir) / "metrics.jsonl", std::ios::app);
    log_ << fmt::format("dagpt train_predictor: {} parameters, {} on {} thread(s); run directory {}\n",
                        model_->num_parameters(), cfg_.tokenizer, omp_threads(), cfg_.out_dir);
    auto prev = std::signal(SIGINT, detail::on_sigint);
    detail::stop_flag().store(false);
    const bool tty = ::isatty(::fileno(stdout)) != 0;
    const std::int64_t start = iter_;
    const auto t_start = std::chrono::steady_clock::now();
    auto t_last = t_start;
    double tokens_since = 0;
    for (;; ++iter_) {
      const bool at_end = iter_ >= cfg_.max_iters;
      if (iter_ % cfg_.eval_interval == 0 || at_end) {
        if (tty) log_ << "\r\033[K" << std::flush;
        const EvalResult ev = evaluate();
        log_eval(ev);
        const bool best = ev.loss[0] < best_val_;
        best_val_ = std::min(best_val_, ev.loss[0]);
        if (iter_ > start && (cfg_.always_save_checkpoint || best || at_end)) save();
      }
      if (at_end) break;
      if (detail::stop_flag().load()) {
        if (tty) log_ << "\r\033[K";
        const std::string path = save();
        log_ << fmt::format("stopped at iteration {}: checkpoint {} (continue with --init_from=resume)\n",
                            iter_, path);
        break;
      }
      const double lr = sched_(iter_);
      const auto parts = step(lr);
      tokens_since +=
          static_cast<double>(cfg_.batch_size * cfg_.block_size * cfg_.gradient_accumulation_steps);
      const auto now = std::chrono::steady_clock::now();
      const double since = std::chrono::duration<double>(now - t_last).count();
      const double elapsed = std::chrono::duration<double>(now - t_start).count();
      const double done = static_cast<double>(iter_ + 1 - start);
      const double eta = elapsed / done * static_cast<double>(cfg_.max_iters - iter_ - 1);
      if ((iter_ + 1) % cfg_.log_interval == 0 || tty) {
        const double tps = tokens_since / std::max(since, 1e-9);
        metrics_ << fmt::format(
            R"({{"split": "train", "iter": {}, "loss": {}, "V_mag": {}, "V_sign": {}, "O": {}, "G": {}, "exec": {}, )"
            R"("lr": {}, "grad_norm": {}, "tokens_per_s": {}, "valid_rate": {}, "time_s": {:.3f}}})"
            "\n",
            iter_ + 1, detail::jnum(parts[0]), detail::jnum(parts[1]), detail::jnum(parts[2]),
            detail::jnum(parts[3]), detail::jnum(parts[4]), detail::jnum(parts[5]), detail::jnum(lr),
            detail::jnum(last_norm_), detail::jnum(tps), detail::jnum(valid_rate_), elapsed);
        metrics_.flush();
        train_curve_.emplace_back(static_cast<double>(iter_ + 1), parts[0]);
        const std::string line =
            fmt::format("iter {}/{} | loss {:.4f} | lr {:.2e} | {:.0f} tok/s | ETA {}", iter_ + 1,
                        cfg_.max_iters, parts[0], lr, tps, detail::duration_text(eta));
        if (tty) {
          log_ << "\r\033[K" << line << std::flush;
        } else {
          log_ << line
               << fmt::format(" | V_mag {:.4f} V_sign {:.4f} O {:.4f} G {:.4f} exec {:.4f}\n", parts[1],
                              parts[2], parts[3], parts[4], parts[5])
               << std::flush;  // live when redirected to a file too
        }
        t_last = now;
        tokens_since = 0;
      }
    }
    if (tty) log_ << "\n";
    std::signal(SIGINT, prev);
    write_curves();
    log_ << fmt::format("curves: {}\nparameter checksum: {}\n",
                        (fs::path(cfg_.out_dir) / "curves.svg").string(), parameter_checksum());
  }

  // One optimizer step over gradient_accumulation_steps fresh batches; returns the mean loss components.
  std::array<double, 6> step(double lr) {
    model_->train();
    opt_->zero_grad();
    std::array<double, 6> parts{};
    const int accum = cfg_.gradient_accumulation_steps;
    std::int64_t valid = 0, total = 0;
    for (int m = 0; m < accum; ++m) {
      const data::Batch b = train_->next();
      valid += b.valid_tokens;
      total += b.total_tokens;
      const auto out = (*model_)(b.tokens);
      const auto loss = dag::plan_loss(out.plan.V_mag, out.plan.V_sign, out.plan.O, out.plan.G, out.exec,
                                       b.targets, b.values, b.mask, loss_, out.plan.digit_logits);
      const auto v = loss.values();
      for (std::size_t k = 0; k < 6; ++k) parts[k] += v[k] / accum;
      if (cfg_.check_nans && !std::isfinite(v[0])) {
        dagpt::detail::raise<ValueError>("iteration {}: the loss is not finite ({})", iter_, v[0]);
      }
      (loss.total * static_cast<float>(1.0 / accum)).backward();
    }
    valid_rate_ = total ? static_cast<double>(valid) / static_cast<double>(total) : 0;
    last_norm_ = optim::clip_grad_norm(model_->parameters(), cfg_.grad_clip);
    opt_->step(lr);
    return parts;
  }

  // The validation metrics (fixed set: the first eval_iters batches of the validation stream) and the
  // held-out segments.
  EvalResult evaluate() {
    if (val_.empty()) {
      const auto o = cfg_.stream_options(expr::kValStream);
      for (std::int64_t i = 0; i < cfg_.eval_iters; ++i) {
        val_.push_back(data::make_batch(o, *tok_, static_cast<std::uint64_t>(i * cfg_.batch_size)));
      }
    }
    model_->eval();
    NoGradGuard no_grad;
    EvalResult r;
    std::int64_t pos_all = 0, pos_last = 0;
    dag::PlanMetrics sum_all, sum_last;
    auto accumulate = [](dag::PlanMetrics& into, const dag::PlanMetrics& m) {
      const auto w = static_cast<double>(m.positions);
      into.sign_accuracy += m.sign_accuracy * w;
      into.op_accuracy += m.op_accuracy * w;
      into.gate_accuracy += m.gate_accuracy * w;
      into.exec_within += m.exec_within * w;
      into.plan_exact += m.plan_exact * w;
      into.digit_accuracy += m.digit_accuracy * w;
      into.positions += m.positions;
    };
    for (const auto& b : val_) {
      const auto out = (*model_)(b.tokens);
      const auto loss = dag::plan_loss(out.plan.V_mag, out.plan.V_sign, out.plan.O, out.plan.G, out.exec,
                                       b.targets, b.values, b.mask, loss_, out.plan.digit_logits);
      const auto v = loss.values();
      for (std::size_t k = 0; k < 6; ++k) r.loss[k] += v[k] / static_cast<double>(val_.size());
      const auto plan = out.plan.values();
      const Tensor<float>* logits =
          out.plan.digit_logits.defined() ? &out.plan.digit_logits.value() : nullptr;
      accumulate(sum_all, dag::plan_metrics(plan, out.exec.value(), b.targets, b.values, b.mask, 1e-3,
                                            cfg_.max_decimal_places, logits, loss_.digit_format));
      Tensor<float> last = Tensor<float>::zeros(b.mask.shape());
      const std::int64_t T = b.mask.size(1);
      for (std::int64_t row = 0; row < b.mask.size(0); ++row) {
        for (std::int64_t t = T - 1; t >= 0; --t) {
          if (b.mask.data()[row * T + t] != 0) {
            last.data()[row * T + t] = 1;
            break;
          }
        }
      }
      accumulate(sum_last, dag::plan_metrics(plan, out.exec.value(), b.targets, b.values, last, 1e-3,
                                             cfg_.max_decimal_places));
    }
    auto finish = [](dag::PlanMetrics m) {
      const double w = std::max<double>(1.0, static_cast<double>(m.positions));
      m.sign_accuracy /= w, m.op_accuracy /= w, m.gate_accuracy /= w, m.exec_within /= w, m.plan_exact /= w;
      m.digit_accuracy /= w;
      return m;
    };
    (void)pos_all;
    (void)pos_last;
    r.all = finish(sum_all);
    r.last = finish(sum_last);
    // Held-out segments at the last token.
    for (const auto& seg : heldout_segments()) {
      EvalResult::Segment s{seg.name, static_cast<int>(seg.expressions.size()), 0, 0, 0};
      std::vector<std::string> texts(seg.expressions.begin(), seg.expressions.end());
      for (const auto& p : predict(*model_, *tok_, texts, cfg_.loss_mode == "reference")) {
        if (!p.fits || !p.exact_known || p.tokens > cfg_.block_size) continue;
        ++s.scored;
        s.within += p.within();
        s.exact += plan_matches(p, cfg_.max_decimal_places);
      }
      r.heldout_scored += s.scored;
      r.heldout_within += s.within;
      r.heldout_exact += s.exact;
      r.heldout.push_back(s);
    }
    return r;
  }

  // The evaluation table.
  void print_eval(const EvalResult& r, std::ostream& os) const {
    os << fmt::format("| measure | value |\n|---|---|\n");
    os << fmt::format("| validation loss (total) | {:.4f} |\n", r.loss[0]);
    os << fmt::format("| exec within 1e-3, last token | {:.2f} % |\n", 100 * r.last.exec_within);
    os << fmt::format("| plan exact match, last token | {:.2f} % |\n", 100 * r.last.plan_exact);
    os << fmt::format("| exec within 1e-3, every valid token | {:.2f} % |\n", 100 * r.all.exec_within);
    os << fmt::format("| sign / op / gate accuracy | {:.2f} / {:.2f} / {:.2f} % |\n",
                      100 * r.all.sign_accuracy, 100 * r.all.op_accuracy, 100 * r.all.gate_accuracy);
    if (cfg_.mag_head == "digits")
      os << fmt::format("| digit accuracy | {:.2f} % |\n", 100 * r.all.digit_accuracy);
    os << fmt::format("| held-out segments within 1e-3 | {:.2f} % ({} of {} that fit depth {}) |\n",
                      100 * r.heldout_within_rate(), r.heldout_within, r.heldout_scored, cfg_.dag_depth);
    os << "\n| held-out segment | fit | within 1e-3 | plan exact |\n|---|---|---|---|\n";
    for (const auto& s : r.heldout) {
      os << fmt::format("| {} | {}/{} | {} | {} |\n", s.name, s.scored, s.total, s.within, s.exact);
    }
  }

  // A table of example expressions with predicted and exact values.
  void print_examples(const std::vector<std::string>& texts, std::ostream& os) {
    model_->eval();
    os << "| expression | predicted | exact | relative error |\n|---|---|---|---|\n";
    for (const auto& p : predict(*model_, *tok_, texts, cfg_.loss_mode == "reference")) {
      if (!p.exact_known || p.tokens > cfg_.block_size) {
        os << fmt::format("| `{}` | — | — | {} |\n", p.text, p.note);
        continue;
      }
      os << fmt::format("| `{}` | {:.6g} | {:.6g} | {:.2e}{} |\n", p.text, p.predicted, p.exact,
                        p.rel_error(), p.within() ? "" : " ✗");
    }
  }

  // Writes a checkpoint of everything a resume needs; returns its path.
  std::string save() {
    namespace fs = std::filesystem;
    fs::create_directories(cfg_.out_dir);
    io::Checkpoint ck;
    for (auto& [name, p] : model_->named_parameters()) ck.tensors.emplace("model/" + name, p.value());
    for (const auto& s : opt_->slots()) {
      ck.tensors.emplace("adam/m/" + s.name, s.m);
      ck.tensors.emplace("adam/v/" + s.name, s.v);
    }
    ck.meta["config"] = cfg_.to_toml();
    ck.meta["iter"] = std::to_string(iter_);
    ck.meta["best_val_loss"] = fmt::format("{:.17g}", best_val_);
    ck.meta["data_position"] = std::to_string(train_ ? train_->position() : data_position_);
    ck.meta["dropout_offset"] = std::to_string(model_->dropout_source.gen.offset);
    ck.meta["adam_steps"] = std::to_string(opt_->steps());
    const std::string path = (fs::path(cfg_.out_dir) / fmt::format("ckpt_{:08}.safetensors", iter_)).string();
    io::save_checkpoint(path, ck);
    prune();
    return path;
  }

  // The newest complete checkpoint of a run directory ("" when there is none).
  static std::string latest_checkpoint(const std::string& dir) {
    namespace fs = std::filesystem;
    std::string best;
    if (!fs::is_directory(dir)) return best;
    for (const auto& e : fs::directory_iterator(dir)) {
      const std::string name = e.path().filename().string();
      if (std::regex_match(name, std::regex(R"(ckpt_\d{8}\.safetensors)")) &&
          (best.empty() || e.path().string() > best)) {
        best = e.path().string();
      }
    }
    return best;
  }

 private:
  static int omp_threads() {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
  }

  static bool plan_matches(const Prediction& p, int decimals) {
    if (!p.fits) return false;
    const auto one = Tensor<float>::ones({});
    const auto m = dag::plan_metrics(p.plan, Tensor<float>::scalar(static_cast<float>(p.predicted)), p.target,
                                     Tensor<double>::scalar(p.exact), one, 1e-3, decimals);
    return m.plan_exact == 1.0;
  }

  void log_eval(const EvalResult& r) {
    log_ << fmt::format(
        "eval at iter {}: val loss {:.4f} | last token: exec within 1e-3 {:.2f} %, plan exact {:.2f} % | all "
        "tokens: "
        "exec {:.2f} %, sign {:.2f} %, op {:.2f} %, gate {:.2f} % | held-out {}/{}\n",
        iter_, r.loss[0], 100 * r.last.exec_within, 100 * r.last.plan_exact, 100 * r.all.exec_within,
        100 * r.all.sign_accuracy, 100 * r.all.op_accuracy, 100 * r.all.gate_accuracy, r.heldout_within,
        r.heldout_scored);
    log_.flush();
    if (metrics_.is_open()) {
      std::string seg;
      for (const auto& s : r.heldout)
        seg += fmt::format(R"(, "heldout/{}": {})", s.name,
                           s.scored ? detail::jnum(static_cast<double>(s.within) / s.scored) : "null");
      metrics_ << fmt::format(
          R"({{"split": "val", "iter": {}, "loss": {}, "V_mag": {}, "V_sign": {}, "O": {}, "G": {}, "exec": {}, )"
          R"("exec_within_last": {}, "plan_exact_last": {}, "exec_within": {}, "sign_accuracy": {}, "op_accuracy": {}, )"
          R"("gate_accuracy": {}, "heldout_within": {}{}}})"
          "\n",
          iter_, detail::jnum(r.loss[0]), detail::jnum(r.loss[1]), detail::jnum(r.loss[2]),
          detail::jnum(r.loss[3]), detail::jnum(r.loss[4]), detail::jnum(r.loss[5]),
          detail::jnum(r.last.exec_within), detail::jnum(r.last.plan_exact), detail::jnum(r.all.exec_within),
          detail::jnum(r.all.sign_accuracy), detail::jnum(r.all.op_accuracy),
          detail::jnum(r.all.gate_accuracy), detail::jnum(r.heldout_within_rate()), seg);
      metrics_.flush();
    }
    val_curve_.emplace_back(static_cast<double>(iter_), r.loss[0]);
    within_curve_.emplace_back(static_cast<double>(iter_), r.last.exec_within);
    exact_curve_.emplace_back(static_cast<double>(iter_), r.last.plan_exact);
    heldout_curve_.emplace_back(static_cast<double>(iter_), r.heldout_within_rate());
    write_curves();
  }

  void write_curves() const {
    namespace fs = std::filesystem;
    if (!fs::is_directory(cfg_.out_dir)) return;
    std::string svg =
        R"(<svg xmlns="http://www.w3.org/2000/svg" width="760" height="560" viewBox="0 0 760 560">)"
        R"(<rect width="760" height="560" fill="white"/>)";
    svg += detail::svg_panel({{"train loss", "#1f77b4", train_curve_}, {"val loss", "#d62728", val_curve_}},
                             "loss (log scale) — " + cfg_.name, true, 50, 30, 540, 210);
    svg += detail::svg_panel({{"exec within 1e-3 (last token)", "#2ca02c", within_curve_},
                              {"plan exact (last token)", "#9467bd", exact_curve_},
                              {"held-out within 1e-3", "#ff7f0e", heldout_curve_}},
                             "validation accuracy", false, 50, 300, 540, 210);
    svg += "</svg>\n";
    const fs::path tmp = fs::path(cfg_.out_dir) / "curves.svg.tmp";
    std::ofstream(tmp) << svg;
    fs::rename(tmp, fs::path(cfg_.out_dir) / "curves.svg");
  }

  void prune() {
    namespace fs = std::filesystem;
    std::vector<std::string> all;
    for (const auto& e : fs::directory_iterator(cfg_.out_dir)) {
      const std::string name = e.path().filename().string();
      if (std::regex_match(name, std::regex(R"(ckpt_\d{8}\.safetensors)"))) all.push_back(e.path().string());
    }
    std::sort(all.begin(), all.end());
    const auto keep = static_cast<std::size_t>(std::max(1, cfg_.keep_last));
    for (std::size_t i = 0; i + keep < all.size(); ++i) fs::remove(all[i]);
  }

  void init_from() {
    const std::string& how = cfg_.init_from;
    if (how == "scratch") return;
    if (how.rfind("gpt2", 0) == 0) {
      dagpt::detail::raise<ConfigError>(
          "init_from = \"{}\": GPT-2 weight import is not available yet; use scratch, resume, latest or a "
          "checkpoint "
          "path",
          how);
    }
    std::string path = how;
    if (how == "resume" || how == "latest") {
      path = latest_checkpoint(cfg_.out_dir);
      if (path.empty()) {
        dagpt::detail::raise<ConfigError>(
            "init_from = \"{}\": no checkpoint (ckpt_<iter>.safetensors) in {}; start with "
            "--init_from=scratch",
            how, cfg_.out_dir);
      }
    }
    load(path);
  }

  void load(const std::string& path) {
    const io::Checkpoint ck = io::load_checkpoint(path);
    const TrainConfig saved = TrainConfig::from_toml(ck.field("config", path), path + " (config)");
    auto same = [&](const char* key) {
      const std::string a = saved.value_text(key), b = cfg_.value_text(key);
      if (a != b) {
        dagpt::detail::raise<io::CheckpointError>(
            "checkpoint {}: {} is {} in the checkpoint but {} in this run", path, key, a, b);
      }
    };
    for (const char* k : {"tokenizer", "n_layer", "n_head", "n_embd", "block_size", "dag_depth", "layout",
                          "bias", "mag_head"}) {
      same(k);
    }
    if (cfg_.mag_head == "digits") {  // the digit head's width
      same("max_digits");
      same("max_decimal_places");
    }
    std::map<std::string, Tensor<float>> sd;
    for (auto& [name, p] : model_->named_parameters()) {
      const Tensor<float>& t = ck.tensor("model/" + name, path);
      if (t.shape() != p.shape()) {
        dagpt::detail::raise<io::CheckpointError>(
            "checkpoint {}: tensor 'model/{}' has shape {}, the model needs {}", path, name, t.shape().str(),
            p.shape().str());
      }
      sd.emplace(name, t);
    }
    model_->load_state_dict(sd);
    for (auto& s : opt_->slots()) {
      const Tensor<float>& m = ck.tensor("adam/m/" + s.name, path);
      const Tensor<float>& v = ck.tensor("adam/v/" + s.name, path);
      if (m.shape() != s.m.shape() || v.shape() != s.v.shape()) {
        dagpt::detail::raise<io::CheckpointError>(
            "checkpoint {}: the Adam moments of '{}' have the wrong shape", path, s.name);
      }
      std::copy_n(m.data(), m.numel(), s.m.data());
      std::copy_n(v.data(), v.numel(), s.v.data());
    }
    auto number = [&](const char* key) {
      const std::string& s = ck.field(key, path);
      try {
        std::size_t used = 0;
        const double v = std::stod(s, &used);
        if (used != s.size()) throw std::invalid_argument(s);
        return v;
      } catch (const std::exception&) {
        dagpt::detail::raise<io::CheckpointError>("checkpoint {}: field '{}' is '{}', not a number", path,
                                                  key, s);
      }
    };
    opt_->set_steps(static_cast<std::int64_t>(number("adam_steps")));
    iter_ = cfg_.reload_reset_iters ? 0 : static_cast<std::int64_t>(number("iter"));
    best_val_ = number("best_val_loss");
    data_position_ = static_cast<std::uint64_t>(number("data_position"));
    model_->dropout_source.gen.offset = static_cast<std::uint64_t>(number("dropout_offset"));
    log_ << fmt::format("loaded {} (iteration {})\n", path, iter_);
  }

  TrainConfig cfg_;
  std::ostream& log_;
  std::unique_ptr<text::Tokenizer> tok_;
  std::unique_ptr<dag::PredictorModel<float>> model_;
  std::unique_ptr<optim::AdamW<float>> opt_;
  optim::LrSchedule sched_;
  dag::LossOptions loss_;
  std::unique_ptr<data::DagStream> train_;
  std::vector<data::Batch> val_;
  std::int64_t iter_ = 0;
  double best_val_ = 1e9;
  std::uint64_t data_position_ = 0;
  double last_norm_ = 0, valid_rate_ = 0;
  std::ofstream metrics_;
  std::vector<std::pair<double, double>> train_curve_, val_curve_, within_curve_, exact_curve_,
      heldout_curve_;
};

}  // namespace dagpt::train
