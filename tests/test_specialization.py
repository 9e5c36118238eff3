"""`tfdynhp.specialize`: the head keeps the chosen classes in order, the user's model is not
changed, the specialized model is smaller, accurate on its classes and exports to int8."""

import keras
import numpy as np
import pytest
from keras import layers

import tfdynhp
from tfdynhp.methods.specialization import remap_labels, slice_head


@pytest.fixture(scope="module")
def trained_digits(digits):
    x, y = digits[:2]
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((64,)), layers.Dense(48, activation="relu"),
                              layers.Dense(24, activation="relu"),
                              layers.Dense(10, activation="softmax")])
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(x, y, epochs=8, batch_size=64, verbose=0)
    return model


def test_sliced_head_outputs_the_chosen_classes_in_order(trained_digits, digits):
    x = digits[0][:20]
    full = trained_digits(x).numpy()
    logits_model = keras.Model(trained_digits.inputs, trained_digits.layers[-1].output)
    sliced = slice_head(trained_digits, [7, 2, 5])
    out = sliced.predict(x, verbose=0)
    assert out.shape == (20, 3)
    # Softmax over the three kept logits, in the order given.
    kept = full[:, [7, 2, 5]]
    np.testing.assert_allclose(out, kept / kept.sum(1, keepdims=True), rtol=1e-4, atol=1e-6)
    assert logits_model.output.shape[-1] == 10  # the user's model is unchanged


def test_remap_labels():
    selected, labels = remap_labels([3, 1, 4, 1, 5], [1, 3])
    assert selected.tolist() == [True, True, False, True, False]
    assert labels.tolist() == [1, 0, 0]


@pytest.mark.parametrize("classes, match", [([1, 10], "does not have: \\[10\\]"),
                                            ([2, 2], "repeats \\[2\\]"), ([], "empty"),
                                            ("12", "list of class indices"),
                                            ([1.5], "integer class indices")])
def test_bad_classes_are_rejected_and_the_model_untouched(trained_digits, digits, classes,
                                                          match):
    before = [w.copy() for w in trained_digits.get_weights()]
    with pytest.raises(ValueError, match=match):
        tfdynhp.specialize(trained_digits, classes, data=digits[:2])
    for a, b in zip(before, trained_digits.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_bad_criterion_and_data_are_rejected(trained_digits, digits):
    with pytest.raises(ValueError, match="Unknown criterion"):
        tfdynhp.specialize(trained_digits, [0, 1], data=digits[:2], criterion="nope")
    with pytest.raises(ValueError, match="labelled data"):
        tfdynhp.specialize(trained_digits, [0, 1], data=digits[0])
    x, y = digits[:2]
    with pytest.raises(ValueError, match="no examples of classes \\[1\\]"):
        tfdynhp.specialize(trained_digits, [0, 1], data=(x[y != 1], y[y != 1]))


@pytest.mark.parametrize("criterion", ["taylor", "lrp"])
def test_specialized_model_is_smaller_accurate_and_exports(trained_digits, digits, criterion,
                                                          tmp_path):
    x, y, x_test, y_test = digits
    classes = [3, 8, 0]
    small = tfdynhp.specialize(trained_digits, classes, data=(x, y), criterion=criterion,
                               fraction=0.6, epochs=3)
    assert small.count_params() < 0.5 * trained_digits.count_params()
    assert [la.units for la in small.layers] == [20, 10, 3]
    selected, labels = remap_labels(y_test, classes)
    accuracy = (small.predict(x_test[selected], verbose=0).argmax(1) == labels).mean()
    assert accuracy > 0.9
    assert trained_digits.layers[0].units == 48  # not changed
    path = tmp_path / "small.keras"
    small.save(path)
    reloaded = keras.models.load_model(path)
    np.testing.assert_allclose(reloaded.predict(x_test[:8], verbose=0),
                               small.predict(x_test[:8], verbose=0), rtol=1e-5)


def test_specialized_model_converts_to_int8_tflite_and_agrees(trained_digits, digits):
    from tfdynhp.converters import quantize, runtimes

    x, y, x_test, y_test = digits
    small = tfdynhp.specialize(trained_digits, [1, 7], data=(x, y), fraction=0.5, epochs=2)
    tflite = quantize.to_int8_tflite(small, x[:200])
    selected, labels = remap_labels(y_test, [1, 7])
    result = runtimes.evaluate(tflite, x_test[selected], labels, time_latency=False)
    keras_predictions = small.predict(x_test[selected], verbose=0).argmax(1)
    assert (result["predictions"] == keras_predictions).mean() > 0.95
    assert result["accuracy"] > 0.9
