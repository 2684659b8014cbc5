# Instantiate with: nix-instantiate --store DIR examples/drv/simple.nix
let
  mk = attrs: derivation ({ system = "x86_64-linux"; builder = "/bin/sh"; } // attrs);
in rec {
  simple = mk { name = "simple"; args = [ "-c" "echo hi > $out" ]; };
  multi = mk { name = "multi"; outputs = [ "out" "dev" "lib" ]; args = [ "-c" "true" ]; };
  dep = mk { name = "dep"; a = "${simple}"; b = multi.dev; c = "${multi.lib}/x"; };
}
