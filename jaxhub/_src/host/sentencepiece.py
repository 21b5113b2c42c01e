"""tensorflow_text's SentencePiece ops in host stages, run with the ``sentencepiece`` package.

A ``tensorflow_text.SentencepieceTokenizer`` keeps its model (a serialized
``ModelProto``) in the attribute ``model`` of a ``SentencepieceOp`` node, which makes the
model resource the other ops read. In a host stage the model is a module asset instead
(the converter writes the attribute to a file): ``SentencepieceOp`` reads it from an
``Asset`` node at its input 0 and runs once, at load, so a model that does not parse
fails the load with the asset named.

The results are TF's, bit for bit: the same ids, pieces and byte offsets, and TF's order
of the extra options (``<s>`` first, then ``</s>``, then the whole sequence reversed; the
added ids have offsets ``(0, 0)``). Detokenizing honours ``reverse`` and ignores
``add_bos``/``add_eos``, as TF's kernel does. Two things differ on purpose:

* Sampling (``nbest_size`` other than 0 or 1 without ``return_nbest``) draws a random
  segmentation in TF; a host stage is deterministic, so it refuses (export the tokenizer
  with ``nbest_size=0``). ``return_nbest`` (the n best segmentations, one row each) is
  deterministic and supported.
* An id outside the vocabulary given to ``SentencepieceIdToStringOp`` is an error here;
  TF's kernel reads past its table.

Bytes that are not UTF-8 are tokenized as TF does: each invalid byte is one unknown
piece (id of ``<unk>``, piece ``U+FFFD``) covering that byte.
"""

from __future__ import annotations

import itertools
from typing import Any, Sequence

import numpy as np

from jaxhub._src.host.limits import check_elements
from jaxhub._src.host.ops import register
from jaxhub._src.host.registry import ANY

#: Offsets of the ``<s>``/``</s>`` pieces the extra options add (TF's kernel gives these).
_ADDED_SPAN = (0, 0)


class SentencePieceModel:
    """A loaded SentencePiece model: what ``SentencepieceOp`` makes and the others read.

    Args:
      proto: the serialized ``ModelProto``.
      asset: the asset it was read from, for messages.

    Raises:
      ValueError: the bytes are not a SentencePiece model (the message names the asset).
    """

    def __init__(self, proto: bytes, asset: str):
        import sentencepiece  # the package; imported on first use: most modules need none

        self.asset = asset
        self.processor = sentencepiece.SentencePieceProcessor()
        try:
            loaded = self.processor.LoadFromSerializedProto(proto)
        except (RuntimeError, TypeError, ValueError) as e:
            # The package's message is a C++ source location; say what it means.
            why = "its ModelProto does not parse" if "Parse" in str(e) else \
                str(e).strip() or type(e).__name__
            loaded = False
        else:
            why = "the loader refused it"
        if not loaded or self.processor.GetPieceSize() == 0:
            raise ValueError(f"asset {asset!r} ({len(proto):,} bytes) is not a SentencePiece "
                             f"model that parses ({why}); re-export the module with its "
                             f"tokenizer's model, or replace the damaged file")
        self.size = self.processor.GetPieceSize()

    def special_id(self, which: str) -> int:
        """The id of ``<s>`` (``which="bos"``) or ``</s>`` (``"eos"``).

        Raises:
          ValueError: the model defines no such piece (TF refuses the option too).
        """
        found = self.processor.bos_id() if which == "bos" else self.processor.eos_id()
        if found < 0:
            raise ValueError(f"add_{which} is set, but the SentencePiece model in asset "
                             f"{self.asset!r} defines no {which.upper()} piece")
        return found

    def piece(self, piece_id: int) -> bytes:
        """The piece of ``piece_id``, UTF-8.

        Raises:
          ValueError: the id is outside the vocabulary.
        """
        if not 0 <= piece_id < self.size:
            raise ValueError(f"id {piece_id} is outside the SentencePiece vocabulary of "
                             f"{self.size} pieces (asset {self.asset!r})")
        return self.processor.IdToPiece(piece_id).encode("utf-8")


def _model(value: Any) -> SentencePieceModel:
    if not isinstance(value, SentencePieceModel):
        raise TypeError(f"expected a SentencePiece model (from SentencepieceOp), not "
                        f"{type(value).__name__}")
    return value


def _flag(value: Any, name: str) -> bool:
    arr = np.asarray(value)
    if arr.shape != ():
        raise ValueError(f"{name} must be a scalar, not of shape {arr.shape}")
    return bool(arr)


def _texts(x: Any) -> list[bytes]:
    flat = np.asarray(x, dtype=object).reshape(-1)
    return [s.encode("utf-8") if isinstance(s, str) else bytes(s) for s in flat]


def _check_no_sampling(nbest_size: Any, count: int) -> None:
    sizes = np.asarray(nbest_size).reshape(-1)
    if sizes.size not in (1, count):
        raise ValueError(f"nbest_size has {sizes.size} values for {count} strings")
    sampled = sorted({int(s) for s in sizes} - {0, 1})
    if sampled:
        raise ValueError(
            f"nbest_size={sampled[0]} asks for sampled segmentations (subword "
            f"regularization), which are random; host stages are deterministic and do not "
            f"sample. Export the tokenizer with nbest_size=0 for inference")


# -- the model ------------------------------------------------------------------------------


# ``model`` is empty: the converter moves the proto into an asset, read at input 0.
@register("SentencepieceOp", attrs={"model": ("",), "container": ANY, "shared_name": ANY,
                                    "use_node_name_sharing": ANY},
          file_inputs=(0,), initializer=True)
def _sentencepiece_op(node, model_file):
    if type(model_file).__name__ != "AssetFile":  # a path would let a module read any file
        raise TypeError("the model of a SentencepieceOp must be a module asset")
    return SentencePieceModel(model_file.data, model_file.name)


@register("SentencepieceVocabSizeOp")
def _vocab_size(node, model):
    return np.asarray(_model(model).size, np.int32)


# -- tokenizing -----------------------------------------------------------------------------


def _encode(model: SentencePieceModel, texts: list[bytes], pieces: bool, offsets: bool
            ) -> list[list[list]]:
    """Each text as columns ``[ids, pieces?, starts?, limits?]``, without extra options.

    Only what is asked for is computed: ids alone are the package's fastest path.
    """
    if not texts:
        return []
    if offsets:
        rows = model.processor.encode(texts, return_type="offset_mapping",
                                      return_bytes=True)
        return [[r["ids"]] + ([r["pieces"]] if pieces else [])
                + [[b for b, _ in r["offsets"]], [e for _, e in r["offsets"]]]
                for r in rows]
    ids = model.processor.encode(texts)
    if not pieces:
        return [[row] for row in ids]
    return [[row, p] for row, p in zip(ids, model.processor.encode(texts, out_type=bytes))]


def _encode_nbest(model: SentencePieceModel, texts: list[bytes], nbest: int, pieces: bool,
                  offsets: bool) -> list[list[list]]:
    """:func:`_encode` of the ``nbest`` best segmentations of each text, one row each
    (fewer where a text has fewer; an empty text has one, empty), text after text."""
    if not texts:
        return []
    rows = []
    for result in model.processor.nbest_encode(texts, nbest_size=nbest, return_type="proto"):
        for best in result.nbests:
            columns = [[p.id for p in best.pieces]]
            if pieces:
                columns.append([p.piece.encode("utf-8") for p in best.pieces])
            if offsets:
                columns += [[p.begin for p in best.pieces], [p.end for p in best.pieces]]
            rows.append(columns)
    return rows


def _special(model: SentencePieceModel, which: str, pieces: bool, offsets: bool) -> list:
    """The columns' entries of ``<s>`` or ``</s>``: id, piece, offsets ``(0, 0)`` (TF's)."""
    piece_id = model.special_id(which)
    return [piece_id] + ([model.piece(piece_id)] if pieces else []) + \
        (list(_ADDED_SPAN) if offsets else [])


def _with_options(columns: list[list], bos: list | None, eos: list | None,
                  reverse: bool) -> list[list]:
    """TF's extra options on one row: ``bos`` first, ``eos`` last, then reversed."""
    if bos is None and eos is None and not reverse:
        return columns
    out = []
    for index, column in enumerate(columns):
        column = ([bos[index]] if bos else []) + list(column) + ([eos[index]] if eos else [])
        out.append(column[::-1] if reverse else column)
    return out


def _tokenize(node, model, x, nbest_size, alpha, add_bos, add_eos, reverse,
              with_offsets: bool):
    model = _model(model)
    texts = _texts(x)
    nbest = _nbest(node, nbest_size) if node.attrs.get("return_nbest", False) else None
    if nbest is None:
        _check_no_sampling(nbest_size, len(texts))
    add_bos, add_eos, reverse = (_flag(v, k) for k, v in (
        ("add_bos", add_bos), ("add_eos", add_eos), ("reverse", reverse)))
    # At most one token per byte, a leading "▁", and the two added ones (per segmentation).
    check_elements(node, (sum(map(len, texts)) + 3 * len(texts)) * (nbest or 1), "tokens")
    as_pieces = node.attrs.get("out_type", "int32") == "string"
    bos = _special(model, "bos", as_pieces, with_offsets) if add_bos else None
    eos = _special(model, "eos", as_pieces, with_offsets) if add_eos else None
    encoded = _encode(model, texts, as_pieces, with_offsets) if nbest is None else \
        _encode_nbest(model, texts, nbest, as_pieces, with_offsets)
    rows = [_with_options(columns, bos, eos, reverse) for columns in encoded]
    lengths = [len(columns[0]) for columns in rows]
    splits = np.cumsum([0] + lengths).astype(node.attrs.get("Tsplits", "int64"))

    def flat(column: int, dtype) -> np.ndarray:
        items = itertools.chain.from_iterable(columns[column] for columns in rows)
        if dtype is object:
            out = np.empty(int(splits[-1]), dtype=object)
            out[:] = list(items)
            return out
        return np.fromiter(items, dtype, count=int(splits[-1]))

    values = flat(1, object) if as_pieces else flat(0, np.int32)
    if not with_offsets:
        return values, splits
    first = 2 if as_pieces else 1
    return values, splits, flat(first, np.int64), flat(first + 1, np.int64)


def _nbest(node, nbest_size: Any) -> int:
    """``nbest_size`` of a node with ``return_nbest``: a scalar of at least 1 (as TF)."""
    sizes = np.asarray(nbest_size)
    if sizes.shape != () or int(sizes) < 1:
        raise ValueError(f"with return_nbest, nbest_size must be a scalar >= 1, not "
                         f"{sizes.tolist()!r}")
    check_elements(node, int(sizes), "segmentations per text")
    return int(sizes)


_TOKENIZE_ATTRS = {"return_nbest": ANY, "out_type": ANY, "Tsplits": ANY}


@register("SentencepieceTokenizeOp", attrs=_TOKENIZE_ATTRS)
def _tokenize_op(node, model, x, nbest_size, alpha, add_bos, add_eos, reverse):
    return _tokenize(node, model, x, nbest_size, alpha, add_bos, add_eos, reverse, False)


@register("SentencepieceTokenizeWithOffsetsOp", attrs=_TOKENIZE_ATTRS)
def _tokenize_with_offsets_op(node, model, x, nbest_size, alpha, add_bos, add_eos,
                              reverse):
    return _tokenize(node, model, x, nbest_size, alpha, add_bos, add_eos, reverse, True)


# -- back to text ---------------------------------------------------------------------------


def _decode_row(model: SentencePieceModel, row: Sequence[Any]) -> bytes:
    if row and isinstance(row[0], (bytes, str)):
        pieces = [p.decode("utf-8", "replace") if isinstance(p, bytes) else p for p in row]
        return model.processor.DecodePieces(pieces).encode("utf-8")
    ids = [int(i) for i in row]
    bad = [i for i in ids if not 0 <= i < model.size]
    if bad:
        raise ValueError(f"invalid id {bad[0]}: the SentencePiece vocabulary (asset "
                         f"{model.asset!r}) has {model.size} pieces")
    return model.processor.DecodeIds(ids).encode("utf-8")


@register("SentencepieceDetokenizeOp", attrs=("T", "Tsplits"))
def _detokenize_op(node, model, values, splits, add_bos, add_eos, reverse):
    model = _model(model)
    values = np.asarray(values)
    splits = np.asarray(splits, np.int64).reshape(-1)
    if splits.size == 0 or splits[0] != 0 or np.any(np.diff(splits) < 0) or \
            splits[-1] > len(values):
        raise ValueError(f"row splits {splits.tolist()[:8]} do not describe rows of the "
                         f"{len(values)} values")
    backwards = _flag(reverse, "reverse")  # add_bos/add_eos do not change decoding (TF)
    out = np.empty(len(splits) - 1, dtype=object)
    for r in range(len(out)):
        row = list(values[splits[r]:splits[r + 1]])
        out[r] = _decode_row(model, row[::-1] if backwards else row)
    return out


@register("SentencepieceIdToStringOp")
def _id_to_string_op(node, model, ids):
    model = _model(model)
    ids = np.asarray(ids)
    out = np.empty(ids.shape, dtype=object)
    out.reshape(-1)[:] = [model.piece(int(i)) for i in ids.reshape(-1)]
    return out


@register("SentencepieceStringToIdOp")
def _string_to_id_op(node, model, pieces):
    model = _model(model)
    arr = np.asarray(pieces, dtype=object)
    flat = [model.processor.PieceToId(p.decode("utf-8", "replace") if isinstance(p, bytes)
                                      else p) for p in arr.reshape(-1)]
    return np.asarray(flat, np.int32).reshape(arr.shape)
