// `unwedge methods [--options NAME]`: the method registry with one-line descriptions, or one
// method's options with their defaults (the keys `unwedge train --opt KEY=VALUE` accepts).
#include <cstdio>

#include "cli_common.h"
#include "unwedge/methods/method.h"

namespace unwedge::cli {

namespace {

struct MethodsParams {
  std::string options_of;  ///< method whose options to list; empty = list the methods
};

// What a method trains on and what else it can do, e.g. "half tomograms, posterior".
std::string capabilities(const MethodCapabilities& c) {
  std::string s = c.halves && c.single ? "halves or single" : c.halves ? "half tomograms"
                                                                        : "single tomogram";
  if (c.tilt_series) s += ", tilt series";
  if (c.posterior) s += ", posterior";
  if (c.embedding) s += ", embedding";
  return s;
}

void list_methods() {
  std::printf("%-20s %-29s %s\n", "method", "input, capabilities", "description");
  for (const auto& m : method_registry().list()) {
    std::printf("%-20s %-29s %s\n", m.name.c_str(), capabilities(m.can).c_str(),
                m.description.c_str());
  }
  // The README's "Which method when", short; the figures behind it are in bench/RESULTS.md.
  std::printf(
      "\nWhich one (README \"Which method when\"; figures in bench/RESULTS.md):\n"
      "  the wedge filled, with halves   cryogen-ot (32 channels wide on a GPU, or from 8 CPU-minutes\n"
      "                                  and 7 per million voxels on a fast CPU); or ei (the same\n"
      "                                  without the prior; level with it on a large volume: try\n"
      "                                  both); ddw, the DeepDeWedge baseline, fills less\n"
      "  the wedge filled, one tomogram  isonet, or cryogen-ot --in (its core without the prior):\n"
      "                                  level on two real microtubules; try both\n"
      "  denoising only, with halves     n2n (the cheapest steps)\n"
      "  denoising without halves        n2v --domain tilt-series\n"
      "  uncertainty                     unwedge sample --uq bootstrap --calibrate (any model);\n"
      "                                  cryowgen-mc, cryowgen-langevin for a method's own posterior\n"
      "  particle embeddings             contrastive\n");
}

void list_options(const std::string& name) {
  const MethodInfo& info = method_registry().get(name);
  std::printf("%s: %s\n", info.name.c_str(), info.description.c_str());
  for (const auto& o : info.options) {
    std::printf("  %-18s %-10s %s\n", o.key.c_str(), o.default_value.dump().c_str(),
                o.help.c_str());
  }
}

}  // namespace

void add_methods_command(CLI::App& root, GlobalOptions&) {
  auto p = std::make_shared<MethodsParams>();
  CLI::App* cmd = root.add_subcommand(
      "methods", "List the restoration methods (name, input and capabilities, description), or one "
                 "method's options");
  cmd->add_option("--options", p->options_of,
                  "Print the options of this method with their defaults (for train --opt)");
  cmd->callback([p] {
    if (p->options_of.empty()) {
      list_methods();
    } else {
      list_options(p->options_of);
    }
  });
}

}  // namespace unwedge::cli
