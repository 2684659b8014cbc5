# Derivations for the differential build tests: every attribute is built by
# `nix-build --option sandbox true` in one scratch store and by `kiln build` in another.
# `busybox` is a directory holding a static busybox named `sh`; `fodFlat`/`fodRec` are
# the sha256 hashes (base16) of the fixed outputs' contents, computed by the test.
{ busybox, fodFlat, fodRec }:
let
  bb = builtins.path { path = busybox; name = "busybox"; };
  sh = "${bb}/sh";
  mk = name: script: attrs: derivation ({
    inherit name;
    system = "x86_64-linux";
    builder = sh;
    args = [ "-c" script ];
  } // attrs);
in rec {
  leaf1 = mk "leaf1" "echo one > $out" { };
  leaf2 = mk "leaf2" "mkdir -p $out/sub; echo two > $out/sub/f; chmod +x $out/sub/f" { };
  leaf3 = mk "leaf3" "ln -s /nix/store/nowhere $out" { };

  chain1 = mk "chain1" "echo 1 > $out" { };
  chain2 = mk "chain2" "cat ${chain1} > $out; echo 2 >> $out" { };
  chain3 = mk "chain3" "mkdir $out; cat ${chain2} > $out/data; ln -s ${chain2} $out/prev" { };
  chain4 = mk "chain4" "mkdir $out; cp ${chain3}/data $out/; echo ${chain3} > $out/ref" { };

  multi = mk "multi" ''
    mkdir -p $out/bin $dev/include $lib/lib
    echo "#!${sh}" > $out/bin/tool; chmod +x $out/bin/tool
    echo "uses $lib" > $dev/include/h
    ln -s $lib/lib $dev/libdir
    echo lib > $lib/lib/x
    ln -s ../bin/tool $out/bin/alias
  '' { outputs = [ "out" "dev" "lib" ]; };
  usesMulti = mk "uses-multi" "echo ${multi.dev} ${multi.lib} > $out" { };

  fodFlatDrv = mk "fod-flat" "echo fixed > $out" {
    outputHashMode = "flat"; outputHashAlgo = "sha256"; outputHash = fodFlat;
  };
  fodRecDrv = mk "fod-rec" "mkdir $out; echo fixed > $out/f; ln -s f $out/l" {
    outputHashMode = "recursive"; outputHashAlgo = "sha256"; outputHash = fodRec;
  };
  usesFod = mk "uses-fod" "cat ${fodFlatDrv} ${fodRecDrv}/f > $out" { };

  # The dump runs in a subshell followed by another command: the builder itself must
  # keep its output (the pty) open, since Nix and kiln end a build whose builder closes
  # it (busybox would otherwise exec the last subshell in place, redirection and all).
  dump = mk "envdump" ''
    (
    echo "== env"; env | sort
    echo "== id"; id
    echo "== hostname"; hostname
    echo "== pwd"; pwd
    # Link counts (procfs counts every process on the machine) and dates vary.
    echo "== ls /"; ls -la / | awk '{ $2 = ""; $6 = $7 = $8 = ""; print }'
    echo "== ls /dev"; ls /dev
    echo "== passwd"; cat /etc/passwd
    echo "== group"; cat /etc/group
    echo "== hosts"; cat /etc/hosts
    echo "== store"; ls /nix/store
    echo "== build"; ls -la /build | awk '{ $2 = ""; $6 = $7 = $8 = ""; print }'
    echo "== personality"; cat /proc/self/personality 2>&1 || true
    echo "== tty"; [ -t 2 ] && echo tty || echo notty
    ) > $out 2>&1
    echo dumped
  '' { extra = "quote\" back\\slash dollar$ tab\t"; };

  passAsFile = mk "pass-as-file" ''cat "$bigPath" > $out; echo "[$big]" >> $out; echo $small >> $out'' {
    big = "a long value\nwith lines";
    small = "plain";
    passAsFile = [ "big" ];
  };

  # busybox sh has no arrays, so the files are copied rather than sourced.
  # No attribute reaches the environment: the output path comes from .attrs.json.
  exportGraph = mk "export-graph" "cat /build/closure > $out" {
    exportReferencesGraph = [ "closure" chain4 ];
  };

  structured = mk "structured" ''
    out=$(sed -n 's/.*"outputs":{"out":"\([^"]*\)".*/\1/p' /build/.attrs.json)
    cat /build/.attrs.json /build/.attrs.sh > $out
    echo "$NIX_ATTRS_JSON_FILE $NIX_ATTRS_SH_FILE" >> $out
  '' {
    __structuredAttrs = true;
    num = 42;
    flag = true;
    list = [ "a" "b" ];
  };

  # Structured exportReferencesGraph: each name becomes a top-level list of path infos;
  # a single path instead of a list is iterated as one (nlohmann semantics in 2.8).
  structuredGraph = mk "structured-graph" ''
    out=$(sed -n 's/.*"outputs":{"out":"\([^"]*\)".*/\1/p' /build/.attrs.json)
    cat /build/.attrs.json /build/.attrs.sh > $out
  '' {
    __structuredAttrs = true;
    exportReferencesGraph = { closure = [ chain4 ]; one = usesMulti; };
  };
}
