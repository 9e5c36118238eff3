"""Stock Keras layer types grouped by what they do to a tensor, shared by the cost counters
(`tfdynhp.costs.inference`) and the surgery registry (`tfdynhp.layer_types.registry`)."""

import keras

# Pad, crop or repeat positions along the spatial axes: no arithmetic, channels untouched.
SPATIAL_RESIZING = (
    keras.layers.ZeroPadding1D,
    keras.layers.ZeroPadding2D,
    keras.layers.ZeroPadding3D,
    keras.layers.Cropping1D,
    keras.layers.Cropping2D,
    keras.layers.Cropping3D,
    keras.layers.UpSampling1D,
    keras.layers.UpSampling2D,
    keras.layers.UpSampling3D,
)
