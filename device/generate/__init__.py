"""Generation: one magnitude frame per call, forever.

- ``runtime``: picks the TFLite interpreter (ai-edge-litert, tflite-runtime, TensorFlow) in one place;
- ``step_model``: the bundle's one-frame LSTM step model, its state carried along;
- ``bank``: the frame-bank generator (format-2 bundles): the LSTM proposes, the bank plays real frames;
- ``sampler``: the regression generator (format-1 bundles): the model's own predictions fed back.
"""
