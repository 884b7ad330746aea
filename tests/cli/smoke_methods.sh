# `unwedge methods`: the registry and one method's options (sourced by smoke.sh).
check methods-list 0 "n2n +half tomograms" -- "$BIN" methods
check methods-which 0 "wedge filled, with halves +cryogen-ot" -- "$BIN" methods
check methods-n2v 0 "n2v +single tomogram" -- "$BIN" methods
check methods-options 0 "mask_fraction +0.01" -- "$BIN" methods --options n2v
check methods-unknown 1 "unknown method 'nope' \(known: n2n, n2v" -- "$BIN" methods --options nope
