"""The simulation core: pure numpy and the standard library, no gRPC, no protobuf.

Read bottom-up: ``checks`` (ParameterError, range checks), ``seeding`` (random
streams), ``steppers`` (state plus "next block of n values"), ``models`` (one
class per price model), ``ticks``/``quotes``/``volume``/``bars`` (what a path
can add), ``calendar``/``time_axis`` (timestamps), ``paths`` (a PathPlan built
block by block), ``universe``/``market`` (the live market's instruments and
ticks), ``book`` (the order book and trades around a live price, pure
functions of the market's keys). The RPC layer in ``server`` translates
requests into these objects and encodes what comes back.
"""
