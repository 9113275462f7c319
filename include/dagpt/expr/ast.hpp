// Expression trees, stored in one arena per expression (no allocation per node), in the shapes of
// REFERENCE.md §3.1-3.2: the parser makes SymPy-shaped trees (n-ary Add and Mul, Recip = Pow(x, -1),
// subtraction as Mul(-1, x), Neg for a minus before '('); the normalizer makes Sub, Div and Neg forms.
// Standalone: depends only on the standard library and fmt.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

namespace dagpt::expr {

enum class Op : std::uint8_t {
  Integer,  // literal without a '.' or exponent
  Float,    // literal with a '.' (or an exponent)
  Add,      // n-ary sum
  Mul,      // n-ary product
  Recip,    // 1/x (SymPy's Pow(x, -1)); only inside a parsed Mul
  Sub,      // a0 - a1 - ... (normalized form, >= 2 args)
  Div,      // a0 / a1 / ... (normalized form, >= 2 args)
  Neg,      // -x
};

inline const char* op_name(Op op) {
  switch (op) {
    case Op::Integer:
      return "Integer";
    case Op::Float:
      return "Float";
    case Op::Add:
      return "Add";
    case Op::Mul:
      return "Mul";
    case Op::Recip:
      return "Recip";
    case Op::Sub:
      return "Sub";
    case Op::Div:
      return "Div";
    case Op::Neg:
      return "Neg";
  }
  return "?";
}

inline bool is_literal(Op op) { return op == Op::Integer || op == Op::Float; }

using NodeId = std::uint32_t;

struct Node {
  Op op = Op::Integer;
  std::uint32_t first = 0;  // children: Expr::kids_[first, first + count)
  std::uint32_t count = 0;
  double value = 0;        // literal value (correctly rounded from its text)
  std::uint32_t text = 0;  // literal text: Expr::pool_[text, text + text_len), sign folded in
  std::uint32_t text_len = 0;
  std::uint32_t offset = 0;  // byte offset of the node's first character in the parsed source
};

// A tree in an arena. Nodes refer to children by id; a node's children are contiguous.
class Expr {
 public:
  struct Children {
    const NodeId* b;
    const NodeId* e;
    const NodeId* begin() const { return b; }
    const NodeId* end() const { return e; }
    std::size_t size() const { return static_cast<std::size_t>(e - b); }
    NodeId operator[](std::size_t i) const { return b[i]; }
  };

  bool empty() const { return nodes_.empty(); }
  NodeId root() const { return root_; }
  void set_root(NodeId r) { root_ = r; }
  const Node& node(NodeId id) const { return nodes_[id]; }
  Op op(NodeId id) const { return nodes_[id].op; }
  Children children(NodeId id) const {
    const Node& n = nodes_[id];
    return {kids_.data() + n.first, kids_.data() + n.first + n.count};
  }
  std::string_view text(NodeId id) const {
    const Node& n = nodes_[id];
    return {pool_.data() + n.text, n.text_len};
  }
  double value(NodeId id) const { return nodes_[id].value; }
  std::size_t arena_size() const { return nodes_.size(); }

  // Empties the tree and keeps the capacity, so that a reused Expr allocates nothing.
  void clear() {
    nodes_.clear();
    kids_.clear();
    pool_.clear();
    root_ = 0;
  }
  void reserve(std::size_t nodes, std::size_t chars) {
    nodes_.reserve(nodes);
    kids_.reserve(nodes);
    pool_.reserve(chars);
  }

  NodeId add_literal(Op kind, double value, std::string_view text, std::uint32_t offset = 0) {
    Node n;
    n.op = kind;
    n.value = value;
    n.text = static_cast<std::uint32_t>(pool_.size());
    n.text_len = static_cast<std::uint32_t>(text.size());
    n.offset = offset;
    pool_.append(text);
    nodes_.push_back(n);
    return static_cast<NodeId>(nodes_.size() - 1);
  }
  NodeId add_node(Op op, const NodeId* kids, std::size_t count, std::uint32_t offset = 0) {
    Node n;
    n.op = op;
    n.first = static_cast<std::uint32_t>(kids_.size());
    n.count = static_cast<std::uint32_t>(count);
    n.offset = offset;
    kids_.insert(kids_.end(), kids, kids + count);
    nodes_.push_back(n);
    return static_cast<NodeId>(nodes_.size() - 1);
  }
  NodeId add_node(Op op, std::initializer_list<NodeId> kids, std::uint32_t offset = 0) {
    return add_node(op, kids.begin(), kids.size(), offset);
  }
  // A group of operands: the n-ary `op` of them, the operand itself when there is one, the Integer literal
  // `empty` (0 for a sum, 1 for a product) when there is none.
  NodeId add_group(Op op, const NodeId* kids, std::size_t count, int empty, std::uint32_t offset = 0) {
    if (count == 1) return kids[0];
    if (count == 0) return add_literal(Op::Integer, empty, empty == 0 ? "0" : "1", offset);
    return add_node(op, kids, count, offset);
  }
  // Copies the subtree `id` of `src` into this arena.
  NodeId import(const Expr& src, NodeId id) {
    const Node& n = src.node(id);
    if (is_literal(n.op)) return add_literal(n.op, n.value, src.text(id), n.offset);
    std::vector<NodeId> k;
    k.reserve(n.count);
    for (NodeId c : src.children(id)) k.push_back(import(src, c));
    return add_node(n.op, k.data(), k.size(), n.offset);
  }

 private:
  std::vector<Node> nodes_;
  std::vector<NodeId> kids_;
  std::string pool_;
  NodeId root_ = 0;
};

namespace detail {
// Digits of an Integer literal without sign and leading zeros ("-007" -> "7", "0" -> "0").
inline std::string_view integer_digits(std::string_view t, bool& negative) {
  negative = false;
  while (!t.empty() && (t[0] == '-' || t[0] == '+')) {
    negative = negative != (t[0] == '-');
    t.remove_prefix(1);
  }
  while (t.size() > 1 && t[0] == '0') t.remove_prefix(1);
  if (t == "0") negative = false;
  return t;
}
}  // namespace detail

// Structural equality as SymPy's: same node kinds, same children in order; Floats equal by value,
// Integers by exact digits (Float 2.0 and Integer 2 differ).
inline bool same(const Expr& a, NodeId x, const Expr& b, NodeId y) {
  const Node& p = a.node(x);
  const Node& q = b.node(y);
  if (p.op != q.op) return false;
  if (p.op == Op::Float) return p.value == q.value;
  if (p.op == Op::Integer) {
    bool na = false;
    bool nb = false;
    const auto da = detail::integer_digits(a.text(x), na);
    const auto db = detail::integer_digits(b.text(y), nb);
    return na == nb && da == db;
  }
  if (p.count != q.count) return false;
  auto ca = a.children(x);
  auto cb = b.children(y);
  for (std::size_t i = 0; i < ca.size(); ++i) {
    if (!same(a, ca[i], b, cb[i])) return false;
  }
  return true;
}

inline bool operator==(const Expr& a, const Expr& b) {
  if (a.empty() || b.empty()) return a.empty() == b.empty();
  return same(a, a.root(), b, b.root());
}
inline bool operator!=(const Expr& a, const Expr& b) { return !(a == b); }

}  // namespace dagpt::expr
