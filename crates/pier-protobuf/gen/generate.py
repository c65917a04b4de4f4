#!/usr/bin/env python3
"""Generate crates/pier-protobuf/src/schema/generated.rs: the wire schema of every message reachable from
the kinds Pier decodes.

Two sources are joined on (message, field number):

* k8s-pb's generated prost code (the crate this workspace depends on) gives, per message, each
  field's number, protobuf type, cardinality and message type;
* the upstream Go types (k8s.io/api and k8s.io/apimachinery at the Kubernetes release k8s-pb was
  generated from) give what protobuf cannot: the JSON name, `omitempty`, whether the Go field is
  a pointer (so a present zero is meaningful), whether it is embedded `json:",inline"`, and the
  declaration order, which is the key order of Go's encoding/json.

Usage (paths are examples):

    python3 gen/generate.py \
        --k8s-pb ~/.cargo/registry/src/index.crates.io-*/k8s-pb-0.9.0 \
        --api-git /path/to/kubernetes/api/.git --api-ref v0.35.7 \
        --apimachinery-git /path/to/kubernetes/apimachinery/.git --apimachinery-ref v0.35.7 \
        > src/schema/generated.rs
"""
import argparse, os, re, subprocess, sys

# (apiVersion, kind, k8s-pb module path, message). DeleteOptions is listed once; the decoder
# accepts it under any apiVersion because client-go encodes it with the client's group version.
ROOTS = [
    ("v1", "Namespace", "api/core/v1", "Namespace"),
    ("v1", "Pod", "api/core/v1", "Pod"),
    ("v1", "Service", "api/core/v1", "Service"),
    ("v1", "Endpoints", "api/core/v1", "Endpoints"),
    ("v1", "ReplicationController", "api/core/v1", "ReplicationController"),
    ("v1", "Secret", "api/core/v1", "Secret"),
    ("v1", "ConfigMap", "api/core/v1", "ConfigMap"),
    ("v1", "ServiceAccount", "api/core/v1", "ServiceAccount"),
    ("v1", "Node", "api/core/v1", "Node"),
    ("v1", "Event", "api/core/v1", "Event"),
    ("v1", "Binding", "api/core/v1", "Binding"),
    ("apps/v1", "Deployment", "api/apps/v1", "Deployment"),
    ("apps/v1", "ReplicaSet", "api/apps/v1", "ReplicaSet"),
    ("discovery.k8s.io/v1", "EndpointSlice", "api/discovery/v1", "EndpointSlice"),
    ("networking.k8s.io/v1", "Ingress", "api/networking/v1", "Ingress"),
    ("networking.k8s.io/v1", "IngressClass", "api/networking/v1", "IngressClass"),
    ("events.k8s.io/v1", "Event", "api/events/v1", "Event"),
    ("coordination.k8s.io/v1", "Lease", "api/coordination/v1", "Lease"),
    ("autoscaling/v1", "Scale", "api/autoscaling/v1", "Scale"),
    ("policy/v1", "Eviction", "api/policy/v1", "Eviction"),
    ("meta.k8s.io/v1", "DeleteOptions", "apimachinery/pkg/apis/meta/v1", "DeleteOptions"),
]

# Messages whose JSON form is not an object of their fields (custom MarshalJSON upstream).
SPECIAL = {
    "apimachinery/pkg/apis/meta/v1.Time": "Time",
    "apimachinery/pkg/apis/meta/v1.MicroTime": "MicroTime",
    "apimachinery/pkg/apis/meta/v1.FieldsV1": "RawJson",
    "apimachinery/pkg/runtime.RawExtension": "RawJson",
    "apimachinery/pkg/util/intstr.IntOrString": "IntOrString",
    "apimachinery/pkg/api/resource.Quantity": "Quantity",
}

ATTR = re.compile(r'#\[prost\((.*)\)\]')
FIELD = re.compile(r'pub (r#)?(\w+):\s*(.*),$')


def parse_k8s_pb(src):
    """{ 'api/core/v1.Pod': [(tag, kind, repeated, map_value, type_ref, rust_name)] }"""
    messages = {}
    for root, _, files in os.walk(src):
        for f in files:
            if f != "mod.rs":
                continue
            modpath = os.path.relpath(root, src).split(os.sep)
            text = open(os.path.join(root, f)).read()
            lines = text.split("\n")
            current = None
            i = 0
            while i < len(lines):
                line = lines[i].strip()
                m = re.match(r'pub struct (\w+) \{', line)
                if m:
                    current = []
                    messages["/".join(modpath) + "." + m.group(1)] = current
                elif line == "}":
                    current = None
                elif current is not None and line.startswith("#[prost("):
                    attr = ATTR.match(line).group(1)
                    decl = ""
                    i += 1
                    while True:
                        decl += " " + lines[i].strip()
                        # A field's type may span lines (rustfmt breaks long generics).
                        if decl.rstrip().endswith(",") and decl.count("<") == decl.count(">"):
                            break
                        i += 1
                    fm = FIELD.match(decl.strip())
                    rust_name, rust_ty = fm.group(2), fm.group(3)
                    tag = int(re.search(r'tag = "(\d+)"', attr).group(1))
                    current.append(field_of(attr, tag, rust_name, rust_ty, modpath))
                i += 1
    return messages


def resolve(ty, modpath):
    """The 'module/path.Message' a Rust type path names, seen from `modpath`."""
    inner = re.sub(r'^.*?<', '', ty) if '<' in ty else ty
    inner = inner.replace('>', '')
    ty = [p.strip() for p in inner.split(',') if p.strip()][-1]
    ty = re.sub(r'^.*<', '', ty)
    parts = ty.split("::")
    base = list(modpath)
    while parts and parts[0] == "super":
        base.pop()
        parts.pop(0)
    return "/".join(base + parts[:-1]) + "." + parts[-1]


def field_of(attr, tag, name, ty, modpath):
    head = attr.split(",")[0].strip()
    repeated = ", repeated" in attr
    if head.startswith("btree_map"):
        value = re.search(r'btree_map = "string, (\w+)"', attr).group(1)
        if value == "message":
            return (tag, "map", False, ("message", resolve(ty, modpath)), name)
        return (tag, "map", False, (value, None), name)
    if head == "message":
        return (tag, "message", repeated, resolve(ty, modpath), name)
    if head.startswith("bytes"):
        return (tag, "bytes", repeated, None, name)
    return (tag, head, repeated, None, name)


GO_STRUCT = re.compile(r'^type (\w+) struct \{\s*$')
GO_FIELD = re.compile(r'^\s*(?:(\w+)\s+)?(\*?[\w.\[\]*]+(?:\[[\w.]+\][\w.*\[\]]+)?)\s+`(.*)`\s*$')


def git_files(gitdir, ref, prefix):
    out = subprocess.check_output(["git", "--git-dir", gitdir, "ls-tree", "-r", "--name-only", ref, prefix], text=True)
    return [p for p in out.split() if p.endswith(".go") and not p.endswith("_test.go")
            and "zz_generated" not in p and not p.endswith(".pb.go")]


def parse_go(gitdir, ref, prefix, pkg_prefix):
    """{ 'api/core/v1.Pod': {tag: (json_name, omitempty, pointer, inline, order)} }"""
    facts = {}
    for path in git_files(gitdir, ref, prefix):
        pkg = pkg_prefix + os.path.dirname(path)
        text = subprocess.check_output(["git", "--git-dir", gitdir, "show", f"{ref}:{path}"], text=True)
        current = None
        order = 0
        for line in text.split("\n"):
            m = GO_STRUCT.match(line)
            if m:
                current = {}
                facts[pkg + "." + m.group(1)] = current
                order = 0
                continue
            if line.startswith("}"):
                current = None
                continue
            if current is None:
                continue
            fm = GO_FIELD.match(line)
            if not fm:
                continue
            gotype, tags = fm.group(2), fm.group(3)
            pb = re.search(r'protobuf:"(\w+),(\d+),', tags)
            if not pb:
                continue
            js = re.search(r'json:"([^"]*)"', tags)
            jparts = js.group(1).split(",") if js else [fm.group(1) or gotype]
            jname = jparts[0]
            inline = "inline" in jparts[1:]
            current[int(pb.group(2))] = (jname, "omitempty" in jparts[1:], gotype.startswith("*"), inline, order)
            order += 1
    return facts


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--k8s-pb", required=True)
    ap.add_argument("--api-git", required=True)
    ap.add_argument("--api-ref", required=True)
    ap.add_argument("--apimachinery-git", required=True)
    ap.add_argument("--apimachinery-ref", required=True)
    a = ap.parse_args()
    pb = parse_k8s_pb(os.path.join(a.k8s_pb, "src"))
    go = parse_go(a.api_git, a.api_ref, ".", "api/")
    go.update(parse_go(a.apimachinery_git, a.apimachinery_ref, "pkg", "apimachinery/"))
    # k8s-pb re-cases some message names (PodDNSConfig is PodDnsConfig there), so join case-blind
    # and keep the upstream spelling for the table.
    go_names = {k.lower(): k for k in go}

    # Reachability from the roots, in a stable order.
    order, seen, stack = [], set(), [f"{m}.{n}" for _, _, m, n in ROOTS]
    while stack:
        name = stack.pop(0)
        if name in seen:
            continue
        seen.add(name)
        order.append(name)
        if name in SPECIAL:
            continue
        if name not in pb:
            sys.exit(f"message {name} not found in k8s-pb")
        for tag, kind, rep, extra, _ in pb[name]:
            if kind == "message":
                stack.append(extra)
            elif kind == "map" and extra[0] == "message":
                stack.append(extra[1])
    index = {n: i for i, n in enumerate(order)}

    out = []
    w = out.append
    w("// @generated by crates/pier-protobuf/gen/generate.py; do not edit by hand.")
    w(f"// Sources: k8s-pb {os.path.basename(os.path.normpath(a.k8s_pb))}, k8s.io/api {a.api_ref}, "
      f"k8s.io/apimachinery {a.apimachinery_ref}.")
    w("")
    w("use super::{Field, Kind, Message, Root, Special, Ty};")
    w("")
    w("pub(crate) static ROOTS: &[Root] = &[")
    for av, kind, m, n in ROOTS:
        w(f'    Root {{ api_version: "{av}", kind: "{kind}", message: {index[m + "." + n]} }},')
    w("];")
    w("")
    w("pub(crate) static MESSAGES: &[Message] = &[")
    for name in order:
        mod, msg = name.rsplit(".", 1)
        upstream = go_names.get(name.lower(), name)
        full = "io.k8s." + mod.replace("/", ".") + "." + upstream.rsplit(".", 1)[1]
        special = SPECIAL.get(name, "None")
        w(f'    // {index[name]}')
        w(f'    Message {{ name: "{full}", special: Special::{special}, fields: &[')
        fields = pb.get(name, [])
        facts = go.get(go_names.get(name.lower(), name))
        if name in SPECIAL:
            # Decoded by hand (custom JSON upstream); names here are only for reading the table.
            facts = {f[0]: (f[4], False, False, False, f[0]) for f in fields}
        if facts is None and fields:
            sys.exit(f"no Go struct for {name}")
        rows = []
        for tag, kind, rep, extra, rust_name in fields:
            if tag not in facts:
                sys.exit(f"no Go field for {name} tag {tag} ({rust_name})")
            jname, omitempty, pointer, inline, pos = facts[tag]
            if kind == "message":
                ty = f"Ty::Message({index[extra]})"
            elif kind == "map":
                ty = f"Ty::MapMessage({index[extra[1]]})" if extra[0] == "message" else \
                    {"string": "Ty::MapString", "bytes": "Ty::MapBytes"}[extra[0]]
            else:
                ty = {"string": "Ty::String", "bool": "Ty::Bool", "int32": "Ty::Int32", "int64": "Ty::Int64",
                      "double": "Ty::Double", "bytes": "Ty::Bytes"}[kind]
            if jname == "-":
                continue
            card = "Kind::Inline" if inline else ("Kind::Repeated" if rep else (
                "Kind::Pointer" if pointer else ("Kind::OmitEmpty" if omitempty else "Kind::Always")))
            rows.append((pos, f'        Field {{ tag: {tag}, json: "{jname}", ty: {ty}, kind: {card} }},'))
        for _, row in sorted(rows):
            w(row)
        w("    ] },")
    w("];")
    print("\n".join(out))


main()
