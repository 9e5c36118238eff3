"""The dependency graph of coupled channels of a Keras model (after Torch-Pruning's DepGraph).

Every channel (last-axis position) of every tensor in a functional model gets a *unit id*.
Layers that create channels (Dense, Conv, `SelectFeatures`) create fresh ids; layers that
carry channels through (BatchNormalization, activations, pooling, gates, depthwise
convolutions) pass them on; `Add` and the other merges make the ids of their inputs one
(union-find); `Concatenate` places its inputs' ids side by side; `Flatten` repeats them, since
in channels-last Keras channel `c` of an `H x W x C` map becomes features `(h*W + w)*C + c`.
A *group* is a set of coupled channel spaces that must lose the same units together, e.g. the
outputs of every convolution feeding one residual `Add` chain. Removing unit `j` of a group
removes it from every tensor and every layer in which it appears.

Units that reach a model output, a model input (unless a `SelectFeatures` layer makes them
prunable), or a layer surgery cannot follow (a `BARRIER`) are *pinned*: never removed.
"""

import dataclasses

import keras
import numpy as np

from tfdynhp.graph.nodes import functional_of, graph_nodes
from tfdynhp.layer_types import registry
from tfdynhp.layers.gate import HardConcreteGate

OUTPUT_PIN = "reaches a model output"


class _UnionFind:
    def __init__(self):
        self.parent = []

    def new(self, count):
        start = len(self.parent)
        self.parent.extend(range(start, start + count))
        return np.arange(start, start + count, dtype=np.int64)

    def find(self, i):
        root = i
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[i] != root:
            self.parent[i], i = root, self.parent[i]
        return root

    def union(self, a, b):
        ra, rb = self.find(int(a)), self.find(int(b))
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


@dataclasses.dataclass(frozen=True)
class Space:
    """The channels one layer (or a model input) creates."""

    name: str
    layer: object  # the creating layer, or None for a model input
    ids: np.ndarray


@dataclasses.dataclass
class UnitGroup:
    """Channel spaces coupled one to one: they lose the same units together.

    Attributes:
        name: the name of the layer that creates the group's channels (the first, for a merge).
        ids: the group's unit ids in channel order (of its canonical space).
        layers: every layer through which the group's channels pass, in graph order.
        pinned: why the group cannot be pruned, or "" when it can.
        gate: the `HardConcreteGate` on the group's channels, if the model is gated.
        segments: `{layer name: positions}` for every layer creating only part of the group's
            channels (the inputs of a `Concatenate` merged into a residual chain): each must
            keep at least one.
    """

    name: str
    ids: np.ndarray
    layers: list
    pinned: str = ""
    gate: object = None
    segments: dict = dataclasses.field(default_factory=dict)

    @property
    def units(self):
        return len(self.ids)

    @property
    def prunable(self):
        return not self.pinned


class UnitGraph:
    """The unit ids of every tensor of `model` and the groups they form (see module doc)."""

    def __init__(self, model):
        self.model = model
        self.nodes = graph_nodes(model)
        self._uf = _UnionFind()
        self._labels = {}  # id(KerasTensor) -> unit ids along its last axis
        self._pins = {}  # unit id -> reason
        self.spaces = []
        self.roles = {}  # id(node) -> registry.Role
        graph_model = functional_of(model)
        for tensor in graph_model.inputs:
            ids = self._new_space(tensor.name, None, _channels(tensor))
            self._pin(ids, f"model input '{tensor.name}' (gate() adds SelectFeatures to prune "
                      "input features)")
            self._labels[id(tensor)] = ids
        calls = {}
        for node in self.nodes:
            calls[id(node.operation)] = calls.get(id(node.operation), 0) + 1
        for node in self.nodes:
            self._visit(node, calls[id(node.operation)])
        # No more merges: every unit's root, looked up by array indexing from here on.
        self._root_table = np.fromiter(
            (self._uf.find(i) for i in range(len(self._uf.parent))), np.int64,
            len(self._uf.parent))
        for tensor in graph_model.outputs:
            self._pin(self.labels(tensor), OUTPUT_PIN)
        self.groups = self._make_groups()

    # -- walking ----------------------------------------------------------------------------

    def _new_space(self, name, layer, count):
        ids = self._uf.new(count)
        self.spaces.append(Space(name, layer, ids))
        return ids

    def _pin(self, ids, reason):
        for i in ids:
            self._pins.setdefault(int(i), []).append(reason)

    def labels(self, tensor):
        """Unit ids along the last axis of a symbolic tensor of the model."""
        return self._labels[id(tensor)]

    def has_labels(self, tensor):
        """Whether `tensor` is a tensor of the model's own graph (not of a nested model)."""
        return id(tensor) in self._labels

    def _visit(self, node, calls):
        layer = node.operation
        inputs = list(node.input_tensors)
        outputs = list(node.outputs)
        in_labels = [self._labels[id(t)] for t in inputs]
        role = registry.role_of(layer)
        if calls > 1 and not isinstance(layer, HardConcreteGate):
            role = registry.Role(registry.BARRIER, reason=f"shared layer (called {calls} times)")
        if isinstance(layer, keras.Model):
            role = registry.Role(registry.BARRIER, reason="nested model (flatten it first)")
        several = len(outputs) != 1 or (
            len(inputs) != 1 and role.name not in (registry.MERGE, registry.CONCAT)
        )
        if several and role.name != registry.BARRIER:
            role = registry.Role(registry.BARRIER, reason="several inputs or outputs")
        self.roles[id(node)] = role
        name = role.name
        if name == registry.BARRIER:
            for labels in in_labels:
                self._pin(labels, f"passes through '{layer.name}': {role.reason}")
            if role.passthrough and len(in_labels) == 1 and len(outputs) == 1 and (
                len(in_labels[0]) == _channels(outputs[0])
            ):
                self._labels[id(outputs[0])] = in_labels[0]
                return
            for tensor in outputs:
                ids = self._new_space(layer.name, layer, _channels(tensor))
                self._pin(ids, f"created by '{layer.name}': {role.reason}")
                self._labels[id(tensor)] = ids
            return
        out = outputs[0]
        if name in (registry.MIXING, registry.SELECT):
            labels = self._new_space(layer.name, layer, _channels(out))
        elif name == registry.PER_UNIT:
            labels = np.repeat(in_labels[0], role.repeat)
        elif name == registry.PASS:
            labels = in_labels[0]
        elif name == registry.FLATTEN:
            spatial = inputs[0].shape[1:-1]
            if any(s is None for s in spatial):
                self._pin(in_labels[0], f"'{layer.name}' flattens a map of unknown size")
                labels = self._new_space(layer.name, layer, _channels(out))
                self._pin(labels, f"'{layer.name}' flattens a map of unknown size")
            else:
                labels = np.tile(in_labels[0], int(np.prod(spatial, dtype=np.int64)))
        elif name == registry.CONCAT:
            labels = np.concatenate(in_labels)
        else:  # MERGE
            widest = max(in_labels, key=len)
            for labels in in_labels:
                if len(labels) == len(widest):
                    for a, b in zip(widest, labels):
                        self._uf.union(a, b)
                elif len(labels) != 1:  # broadcasting a single channel couples nothing
                    raise ValueError(f"'{layer.name}' merges {len(labels)} with {len(widest)} "
                                     "channels.")
            labels = widest
        if len(labels) != _channels(out):
            raise ValueError(
                f"Cannot follow the channels of '{layer.name}' ({type(layer).__name__}): "
                f"expected {len(labels)} output channels, the layer has {_channels(out)}."
            )
        self._labels[id(out)] = labels

    # -- groups -----------------------------------------------------------------------------

    def roots(self, ids):
        return self._root_table[np.asarray(ids, np.int64)]

    def _make_groups(self):
        space_roots = [self.roots(space.ids) for space in self.spaces]
        owner = {}
        links = _UnionFind()
        links.new(len(self.spaces))
        for index, roots in enumerate(space_roots):
            for root in roots:
                if int(root) in owner:
                    links.union(owner[int(root)], index)
                else:
                    owner[int(root)] = index
        members = {}
        for index in range(len(self.spaces)):
            members.setdefault(links.find(index), []).append(index)
        pinned_roots = {}
        for unit, reasons in self._pins.items():
            pinned_roots.setdefault(int(self._root_table[unit]), []).extend(reasons)
        groups = []
        for indices in members.values():
            all_roots = set()
            for index in indices:
                all_roots.update(int(r) for r in space_roots[index])
            canonical = next(
                (i for i in indices if len(space_roots[i]) == len(all_roots)
                 and len(set(space_roots[i].tolist())) == len(all_roots)),
                None,
            )
            reasons = [reason for r in all_roots for reason in pinned_roots.get(r, ())]
            if canonical is None:
                reasons.append("its channels are concatenated in a layout surgery cannot follow")
                canonical = indices[0]
            space = self.spaces[canonical]
            position = {int(r): p for p, r in enumerate(space_roots[canonical])}
            segments = {
                self.spaces[i].name: np.array([position[int(r)] for r in space_roots[i]])
                for i in indices
                if len(space_roots[i]) < len(all_roots)
            }
            groups.append(UnitGroup(space.name, space_roots[canonical], [],
                                    pinned=reasons[0] if reasons else "", segments=segments))
        by_root = {int(r): g for g in groups for r in g.ids}
        for node in self.nodes:
            touched = []
            for tensor in (*node.input_tensors, *node.outputs):
                for root in set(self.roots(self.labels(tensor)).tolist()):
                    group = by_root.get(root)
                    if group is not None and all(group is not g for g in touched):
                        touched.append(group)
            for group in touched:
                if all(node.operation is not layer for layer in group.layers):
                    group.layers.append(node.operation)
                if isinstance(node.operation, HardConcreteGate):
                    group.gate = node.operation
        self._pinned_roots = pinned_roots
        return sorted(groups, key=lambda g: min(g.ids))

    def needless_barriers(self):
        """`{layer name: reason}` of the barriers that pin channels which would otherwise be
        prunable (a Softmax on the model output pins nothing more): channels they read, and
        channels they create with a kernel (a `channels_first` or grouped convolution right
        after the input) that do not reach a model output."""
        found = {}
        for node in self.nodes:
            role = self.roles[id(node)]
            if role.name != registry.BARRIER:
                continue
            layer = node.operation
            checks = [(t, (OUTPUT_PIN, "model input")) for t in node.input_tensors]
            if not role.passthrough and registry.kernels_of(layer):  # it creates channels
                checks += [(t, (OUTPUT_PIN,)) for t in node.outputs if self.has_labels(t)]
            if any(self._pinned_for_other_reasons(t, excused) for t, excused in checks):
                found[layer.name] = role.reason
        return found

    def _pinned_for_other_reasons(self, tensor, excused):
        """Whether a channel of `tensor` is pinned by no reason starting with `excused`."""
        for root in self.roots(self.labels(tensor)):
            reasons = self._pinned_roots.get(int(root), [])
            if not any(reason.startswith(excused) for reason in reasons):
                return True
        return False

    def group(self, name):
        for group in self.groups:
            if group.name == name:
                return group
        raise KeyError(name)

    def group_of_tensor(self, tensor):
        """The group whose channels `tensor` carries, in the group's own order, or None."""
        roots = self.roots(self.labels(tensor))
        for group in self.groups:
            if len(group.ids) == len(roots) and np.array_equal(group.ids, roots):
                return group
        return None

    def producer_node(self, tensor):
        """The node that computed `tensor`, or None for a model input."""
        if not hasattr(self, "_producers"):
            self._producers = {id(t): node for node in self.nodes for t in node.outputs}
        return self._producers.get(id(tensor))

    def gate_sites(self):
        """Where `gate()` puts gates: `[(tensor, user node, group)]`.

        A gate goes on the input of every channel-mixing layer (the units it consumes). When
        that input carries several groups or a flattened map, the gate moves back through
        `Flatten`, `Concatenate` and layers that commute with scaling a channel (ReLU,
        pooling, dropout) until each gated tensor carries exactly one group's channels in
        order. A group gets a gate only if every channel-mixing layer reading it reads it
        gated; otherwise closing a gate would not remove the channel from that reader, and the
        group is left without gates (`ungated_groups` says why).
        """
        return self._plan_gates()[0]

    def ungated_groups(self):
        """`{group name: reason}` of the prunable groups `gate_sites` can give no gate (a
        reader sees their channels only through a layer no gate can move across, such as a
        depthwise convolution with `depth_multiplier > 1`, which repeats each channel)."""
        blocked = self._plan_gates()[1]
        found = {}
        for group in self.groups:
            if group.prunable:
                reason = next((blocked[int(r)] for r in group.ids if int(r) in blocked), None)
                if reason is not None:
                    found[group.name] = reason
        return found

    def _plan_gates(self):
        sites, blocked = [], {}

        def add(tensor, user):
            """Places gates for `tensor` read by `user`; returns "" or why it cannot."""
            group = self.group_of_tensor(tensor)
            if group is not None:
                if group.prunable:
                    sites.append((tensor, user, group))
                return ""
            parent = self.producer_node(tensor)
            role = self.roles.get(id(parent)) if parent is not None else None
            if role is None:
                return "a model input carries them mixed with other channels"
            if role.name == registry.CONCAT:
                reasons = [add(t, parent) for t in parent.input_tensors]
                return next((reason for reason in reasons if reason), "")
            if role.name == registry.FLATTEN or (role.name == registry.PASS and role.homogeneous):
                return add(parent.input_tensors[0], parent)
            return _blocking_reason(parent.operation, role)

        for node in self.nodes:
            if self.roles[id(node)].name != registry.MIXING:
                continue
            tensor = node.input_tensors[0]
            reason = add(tensor, node)
            if reason:
                reason = f"'{node.operation.name}' reads them through {reason}"
                for root in self.roots(self.labels(tensor)):
                    blocked.setdefault(int(root), reason)
        unique, seen = [], set()
        for tensor, user, group in sites:
            key = (id(tensor), id(user))
            if key not in seen and not blocked.keys() & {int(r) for r in group.ids}:
                seen.add(key)
                unique.append((tensor, user, group))
        return unique, blocked

    def kept_positions(self, tensor, removed_roots):
        """Positions of `tensor`'s last axis whose unit is not in `removed_roots`, or None when
        nothing is removed from it."""
        roots = self.roots(self.labels(tensor))
        keep = ~np.isin(roots, np.fromiter(removed_roots, np.int64, len(removed_roots)))
        return None if keep.all() else np.flatnonzero(keep)


def _blocking_reason(layer, role):
    """Why no gate can move back across `layer` (of `role`) to the channels it carries."""
    if role.repeat > 1:
        return (f"'{layer.name}' ({type(layer).__name__}, depth_multiplier={role.repeat}), "
                "which repeats each channel: no gate can sit on repeated channels")
    return (f"'{layer.name}' ({type(layer).__name__}), which mixes them with other channels "
            "or does not commute with scaling a channel: no gate can move across it")


def _channels(tensor):
    size = tensor.shape[-1] if len(tensor.shape) else 1
    if size is None:
        raise ValueError(f"Tensor '{tensor.name}' has an unknown number of channels.")
    return int(size)


def _fingerprint(model):
    """What a `UnitGraph` is computed from: the layer calls with the shapes of their outputs,
    the model's inputs and the layer types registered (surgery changes the shapes)."""
    return (
        tuple((id(node), id(node.operation), tuple(tuple(t.shape) for t in node.outputs))
              for node in graph_nodes(model)),
        tuple(tuple(t.shape) for t in functional_of(model).inputs),
        registry.generation(),
    )


def analyze(model):
    """The `UnitGraph` of `model` (gated or not).

    Kept with the model until its graph changes (another layer call, another shape after
    surgery, another registered layer type): a DynHP epoch end asks for it about ten times.
    Treat it as read-only.
    """
    fingerprint = _fingerprint(model)
    cached = getattr(model, "_tfdynhp_unit_graph", None)
    if cached is not None and cached[0] == fingerprint:
        return cached[1]
    unit_graph = UnitGraph(model)
    object.__setattr__(model, "_tfdynhp_unit_graph", (fingerprint, unit_graph))
    return unit_graph


def gate_layers(model):
    """The model's `HardConcreteGate` layers, input to output."""
    return [layer for layer in model.layers if isinstance(layer, HardConcreteGate)]


def gated_groups(model):
    """The groups of a gated model that carry a gate, input to output."""
    return [group for group in analyze(model).groups if group.gate is not None]


def refresh_symbolic_shapes(model):
    """Re-derives the shapes of the model's symbolic tensors after surgery, so that
    `model.summary()` and `layer.output.shape` show the narrowed widths, and updates the
    input width each layer recorded when it was built."""
    graph_model = functional_of(model)
    specs = {id(t): keras.KerasTensor(t.shape, dtype=t.dtype) for t in graph_model.inputs}
    for node in graph_nodes(model):
        layer = node.operation
        args, kwargs = node.arguments.fill_in(specs)
        in_shapes = [tuple(specs[id(t)].shape) for t in node.input_tensors]
        outputs = keras.tree.flatten(layer.compute_output_spec(*args, **kwargs))
        for tensor, spec in zip(node.outputs, outputs):
            tensor._shape = tuple(spec.shape)
            specs[id(tensor)] = keras.KerasTensor(spec.shape, dtype=tensor.dtype)
        _refresh_build_metadata(layer, in_shapes)


def _refresh_build_metadata(layer, in_shapes):
    shapes = getattr(layer, "_build_shapes_dict", None)
    if isinstance(shapes, dict) and len(shapes) == 1:
        key = next(iter(shapes))
        layer._build_shapes_dict = {key: in_shapes[0] if len(in_shapes) == 1 else in_shapes}
    spec = getattr(layer, "input_spec", None)
    if isinstance(spec, keras.InputSpec) and spec.axes and len(in_shapes) == 1:
        rank = len(in_shapes[0])
        axes = {
            axis: (in_shapes[0][axis] if axis in (-1, rank - 1) else size)
            for axis, size in spec.axes.items()
        }
        if axes != spec.axes:
            layer.input_spec = keras.InputSpec(
                ndim=spec.ndim, min_ndim=spec.min_ndim, max_ndim=spec.max_ndim, axes=axes
            )
