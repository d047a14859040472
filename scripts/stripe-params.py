#!/usr/bin/env python3
"""Writes crates/sandbox/src/stripe/params.json: the parameters (names, types, enums, required)
that API 2026-10-28.endive accepts on each endpoint the Stripe stand-in serves, taken from the
official Stripe Python SDK's `*Params` types (stripe==16.1.0, MIT) through
../shared/stripe/conformance.py. The stand-in rejects anything else with Stripe's 400, as the
real API does.

Run after adding a route to the stand-in:
  target/stripe-venv/bin/python scripts/stripe-params.py > crates/sandbox/src/stripe/params.json
(scripts/test.sh creates target/stripe-venv.)
"""
import sys, json, typing, re
import pathlib
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1].parent / 'shared' / 'stripe'))
import conformance as c
from typing_extensions import is_typeddict

ROUTES = [
 ("GET","/v1/customers"),("GET","/v1/customers/search"),("GET","/v1/customers/x"),("GET","/v1/customers/x/payment_methods"),
 ("GET","/v1/products"),("GET","/v1/products/x"),("GET","/v1/prices"),("GET","/v1/prices/x"),
 ("GET","/v1/subscription_schedules"),("GET","/v1/subscription_schedules/x"),("GET","/v1/subscriptions/x"),
 ("GET","/v1/checkout/sessions"),("GET","/v1/checkout/sessions/x"),("GET","/v1/checkout/sessions/x/line_items"),
 ("GET","/v1/payment_intents"),("GET","/v1/payment_intents/x"),("GET","/v1/payment_methods/x"),("GET","/v1/charges/x"),
 ("GET","/v1/invoices"),("GET","/v1/invoices/x"),("GET","/v1/refunds"),("GET","/v1/refunds/x"),("GET","/v1/setup_intents/x"),("GET","/v1/events"),("GET","/v1/events/x"),
 ("POST","/v1/customers"),("POST","/v1/customers/x"),("POST","/v1/products"),("POST","/v1/prices"),
 ("POST","/v1/subscription_schedules"),("POST","/v1/subscription_schedules/x"),("POST","/v1/subscription_schedules/x/cancel"),("POST","/v1/subscription_schedules/x/release"),
 ("POST","/v1/checkout/sessions"),("POST","/v1/checkout/sessions/x/expire"),("POST","/v1/payment_intents"),
 ("POST","/v1/payment_intents/x/confirm"),("POST","/v1/payment_intents/x/cancel"),("POST","/v1/payment_methods/x/attach"),
 ("POST","/v1/invoices/x/pay"),("POST","/v1/refunds"),
]

def schema(tp, depth=0):
    kinds = c.alternatives(tp)
    out = []
    for k in kinds:
        origin = typing.get_origin(k)
        if is_typeddict(k):
            out.append(obj(k, depth+1))
        elif origin is list:
            out.append({"l": schema(typing.get_args(k)[0], depth+1)})
        elif origin is dict or getattr(k, "__name__", "") == "UntypedStripeObject":
            args = typing.get_args(k)
            inner = args[1] if len(args) == 2 else str
            out.append({"m": schema(inner, depth+1)})
        elif k is str or k is typing.Any:
            out.append("s")
        elif k is bool:
            out.append("b")
        elif k is int:
            out.append("i")
        elif k is float or getattr(k, "__name__", "") == "Decimal":
            out.append("f")
        elif origin is typing.Literal:
            out.append({"e": [str(a) for a in typing.get_args(k)]})
        else:
            out.append("s")
    # merge enums
    enums = [x for x in out if isinstance(x, dict) and "e" in x]
    rest = [x for x in out if not (isinstance(x, dict) and "e" in x)]
    if enums:
        vals = []
        # `Literal[""]` is the "unset" marker: an empty value passes whatever the type.
        for e in enums: vals += [v for v in e["e"] if v not in vals and v != ""]
        if vals:
            rest.append({"e": vals})
    if "s" in rest:
        rest = [x for x in rest if not (isinstance(x, dict) and "e" in x)]
    rest = [x for i, x in enumerate(rest) if x not in rest[:i]]
    return rest[0] if len(rest) == 1 else {"u": rest}

def obj(td, depth=0):
    hints, required = c.fields(td)
    o = {"o": {n: schema(t, depth) for n, t in sorted(hints.items())}}
    if required: o["r"] = sorted(required)
    return o

routes = c.load_routes()
res = {}
for m, p in ROUTES:
    match = next((r for r in routes if r[0] == m and r[1].match(p)), None)
    assert match, (m, p)
    res[f"{m} {match[2]}"] = obj(c.params_class(match[3]))
json.dump(res, sys.stdout, separators=(",", ":"), sort_keys=True)
