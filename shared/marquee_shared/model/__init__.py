"""The embedding model, shared by embedder (documents) and search (queries) so that neither
service imports the other and both always embed alike. Needs the ``model`` extra
(``pip install marquee-shared[model]``: onnxruntime and tokenizers); the torch backend and the
one-time ONNX export of a sentence-transformers folder also need the ``torch`` extra.

* ``resolve``: the ``MODEL`` setting (``stock``, ``movie-tuned`` or a path) to a folder and id.
* ``identity``: ``ModelId`` (``name@version+digest``), stamped on the Chroma collection and
  reported by ``/ready``, ``/metrics`` and ``/v1/stats``.
* ``files``: the two kinds of model folder (sentence-transformers, Marquee ONNX bundle) and
  the bundle manifest and its checks.
* ``encoder``: loading a model on the torch / onnx / onnx-int8 backends.
* ``bundle``: ``export_bundle``, a sentence-transformers folder to an int8 ONNX bundle.
* ``windows``: long queries as windows of the model's input.

The text a movie is embedded as (``movie_document``) is in ``marquee_shared.index``, beside
the record layout it shares with every reader of the collection.

Nothing is imported here: importing a module of this package does not load numpy, torch or
onnxruntime unless that module needs them.
"""
