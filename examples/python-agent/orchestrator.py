"""A Python orchestrator agent in a Mandate delegation chain, written with the
standard Biscuit library (biscuit-python 0.4) and Mandate's specification
alone (spec/SPEC.md §10): it receives a token delegated to it, reads the
chain, and appends a delegation hop for a sub-agent — a third-party block
signed with its own key, naming the sub-agent and its key, a grant encoded as
the canonical check of §4.1, an expiry no later than the chain's, and a
purpose; optionally usage limits (§18) that the sub-agent and everything it
delegates share. The new token goes to standard output, for the sub-agent.

Run with:
    python orchestrator.py --token orchestrator.tok --root-public-key ed25519/… \
        --key orchestrator.key --to research-agent --to-key ed25519/… \
        --allow 'read:/api/customers/*' --where 'rows<=10' --ttl 600 \
        --purpose 'summarise customer 42' --limit 'read 5/1h' > research.tok

Gap (spec §10.1): biscuit-python 0.4 serializes only a token parsed with
the root public key (`UnverifiedBiscuit` has no `to_base64`), so the
orchestrator needs the issuer's root public key (the issuer service
publishes it at GET /v1/keys).
"""

import argparse
import datetime
import re
import sys

from biscuit_auth import BlockBuilder, Biscuit, KeyPair, PrivateKey, PublicKey

AGENT = re.compile(r'^agent\("((?:[^"\\]|\\.)*)", hex:([0-9a-f]{64})\);$', re.M)
EXPIRY = re.compile(r"\$time <= (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)")
MAX_DEPTH = re.compile(r"^max_depth\((\d+)\);$", re.M)
NAME = re.compile(r"^[A-Za-z0-9_.:\-]{1,256}$")
# §18.1: `ACTION[,ACTION…] N/WINDOW` (count), `ACTION[,ACTION…] PARAM N/WINDOW` (budget).
LIMIT = re.compile(r"^([A-Za-z0-9_.:\-]+(?:,[A-Za-z0-9_.:\-]+)*)(?:\s+([A-Za-z0-9_.:\-]+))?"
                   r"\s+([1-9]\d*)/([1-9]\d*)([smhd])$")
UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def die(message):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def read_private_key(path):
    text = open(path, encoding="utf-8").read().strip()
    if not text.startswith("ed25519-private/"):
        die(f"{path}: not a Mandate private key file (ed25519-private/<hex>)")
    return PrivateKey(text)


def read_chain(token):
    """Step 1 of §10: who holds the token, its earliest expiry, the depth."""
    agents, expiries, max_depth = [], [], None
    for i in range(token.block_count()):
        source = token.block_source(i)
        found = AGENT.findall(source)
        if i == 0 or token.block_external_key(i) is not None:
            if len(found) != 1:
                die(f"block {i}: a hop names exactly one agent (§6)")
            agents.append(found[0])
        expiries += [
            datetime.datetime.strptime(e, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)
            for e in EXPIRY.findall(source)
        ]
        m = MAX_DEPTH.search(source)
        if i == 0 and m:
            max_depth = int(m.group(1))
    return {
        "holder": agents[-1][0],
        "holder_key": "ed25519/" + agents[-1][1],
        "depth": len(agents) - 1,
        "max_depth": max_depth,
        "expires": min(expiries) if expiries else None,
    }


def canonical_check(allow, wheres):
    """§4.1: `check if time($time), operation…, resource…, param…, $time <= {expiry}, …`
    built as parameterised Datalog: every value goes in as a parameter."""
    actions, pattern = allow.split(":", 1)
    actions = sorted(a.strip() for a in actions.split(","))
    for a in actions:
        if not NAME.match(a):
            die(f"action {a!r}: letters, digits and _ . : - only")
    body, exprs, params = ["time($time)"], ["$time <= {expiry}"], {}
    if len(actions) == 1:
        body.append("operation({action})")
        params["action"] = actions[0]
    else:
        body.append("operation($operation)")
        exprs.append("{actions}.contains($operation)")
        params["actions"] = set(actions)
    if pattern.endswith("/**"):
        body.append("resource($resource)")
        exprs.append("$resource.starts_with({dir})")
        params["dir"] = pattern[:-2]
    elif pattern.endswith("/*"):
        body.append("resource({dir}, $resource)")
        params["dir"] = pattern[:-1]
    else:
        body.append("resource({resource})")
        params["resource"] = pattern
    for n, w in enumerate(wheres):
        m = re.match(r"^([A-Za-z0-9_.:\-]+)\s*(<=|>=|<|>)\s*(-?\d+)$", w)
        if not m:
            die(f"--where {w!r}: this example supports integer bounds (rows<=10)")
        body.append(f"param({{p{n}name}}, $p{n})")
        exprs.append(f"$p{n} {m.group(2)} {{p{n}bound}}")
        params[f"p{n}name"], params[f"p{n}bound"] = m.group(1), int(m.group(3))
    return "check if " + ", ".join(body + exprs), params


def limit_facts(limits, budgets):
    """§18.2: each limit is one fact of this hop's block, and the block carries
    the guard `check if limits_enforced(1)`, so that a verifier which does not
    enforce limits denies instead of ignoring them. Values go in as parameters."""
    lines, params = [], {}
    given = [(t, False) for t in limits] + [(t, True) for t in budgets]
    for n, (text, budget) in enumerate(given):
        m = LIMIT.match(text.strip())
        if not m or (m.group(2) is not None) != budget:
            form = "ACTION[,ACTION…] PARAM N/WINDOW" if budget else "ACTION[,ACTION…] N/WINDOW"
            die(f"{'--budget' if budget else '--limit'} {text!r}: expected {form}")
        actions, param, most, count, unit = m.groups()
        window = int(count) * UNIT[unit]
        if int(most) >= 2**63 or window > 366 * 86400:
            die(f"{text!r}: N at most 2^63-1, WINDOW at most 366d")
        params.update({f"l{n}actions": set(actions.split(",")), f"l{n}max": int(most),
                       f"l{n}window": window})
        if budget:
            params[f"l{n}param"] = param
            lines.append(f"budget({{l{n}actions}}, {{l{n}param}}, {{l{n}max}}, {{l{n}window}});")
        else:
            lines.append(f"limit({{l{n}actions}}, {{l{n}max}}, {{l{n}window}});")
    if lines:
        lines.append("check if limits_enforced(1);")
    return lines, params


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--token", required=True)
    ap.add_argument("--root-public-key", required=True)
    ap.add_argument("--key", required=True, help="this agent's private key file")
    ap.add_argument("--to", required=True)
    ap.add_argument("--to-key", required=True)
    ap.add_argument("--allow", required=True, help="ACTION[,ACTION…]:PATTERN")
    ap.add_argument("--where", action="append", default=[])
    ap.add_argument("--ttl", type=int, default=600, help="seconds")
    ap.add_argument("--purpose")
    ap.add_argument("--limit", action="append", default=[],
                    help="a usage limit ACTION[,ACTION…] N/WINDOW (e.g. 'read 5/1h'), shared "
                         "by the sub-agent and everything it delegates (repeatable)")
    ap.add_argument("--budget", action="append", default=[],
                    help="a budget ACTION[,ACTION…] PARAM N/WINDOW (e.g. 'pay amount 500/1d')")
    a = ap.parse_args()

    token = Biscuit.from_base64(open(a.token).read().strip(), PublicKey(a.root_public_key))
    mine = read_private_key(a.key)
    me = KeyPair.from_private_key(mine).public_key
    chain = read_chain(token)
    if str(me) != chain["holder_key"]:
        die(f"this key ({me}) does not hold the token: it was delegated to "
            f"{chain['holder']!r} with key {chain['holder_key']}")
    if chain["max_depth"] is not None and chain["depth"] + 1 > chain["max_depth"]:
        die(f"the root allows at most {chain['max_depth']} delegation hops")
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    expiry = now + datetime.timedelta(seconds=a.ttl)
    if chain["expires"] is not None:
        if chain["expires"] <= now:
            die("the token has expired")
        expiry = min(expiry, chain["expires"])
    if not NAME.match(a.to):
        die("--to: letters, digits and _ . : - only")
    next_key = PublicKey(a.to_key)

    check, params = canonical_check(a.allow, a.where)
    source = "agent({agent}, {agent_key});\n"
    params.update(agent=a.to, agent_key=bytes(next_key.to_bytes()), expiry=expiry)
    if a.purpose:
        source += "purpose({purpose});\n"
        params["purpose"] = a.purpose
    source += check + ";\n"
    limits, limit_params = limit_facts(a.limit, a.budget)
    source += "".join(line + "\n" for line in limits)
    params.update(limit_params)
    # §10 steps 2-5: request, build, sign with this agent's own key, append.
    block = token.third_party_request().create_block(mine, BlockBuilder(source, params))
    print(token.append_third_party(me, block).to_base64())


if __name__ == "__main__":
    main()
