// The built-in method registry: one line per method, in the order `unwedge methods` lists them.
#include "unwedge/methods/method.h"
#include "unwedge/methods/n2n.h"
#include "unwedge/methods/n2v.h"
#include "unwedge/methods/mae.h"
#include "unwedge/methods/contrastive.h"
#include "unwedge/methods/cryowgen_common.h"
#include "unwedge/methods/wedge_methods.h"

namespace unwedge {

namespace {

MethodRegistry build_registry() {
  MethodRegistry r;
  r.add(n2n_method_info());
  r.add(n2v_method_info());
  r.add(mae_method_info());
  r.add(contrastive_method_info());
  r.add(isonet_method_info());
  r.add(ddw_method_info());
  r.add(ei_method_info());
  r.add(cryogen_map_method_info());
  r.add(cryogen_ot_method_info());
  r.add(cryowgen_mc_method_info());
  r.add(cryowgen_langevin_method_info());
  return r;
}

}  // namespace

const MethodRegistry& method_registry() {
  static const MethodRegistry registry = build_registry();
  return registry;
}

}  // namespace unwedge
