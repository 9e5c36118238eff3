"""Knowledge distillation from a teacher model while a gated model trains (Hinton et al., 2015).

`Distillation(teacher)` set on a `GatedModel` (`model.distillation = Distillation(teacher)`)
changes the training loss to

    (1 - alpha) * data_loss + alpha * T^2 * KL(softmax(z_t / T) || softmax(z_s / T))

averaged over the batch, where `z_t` and `z_s` are the teacher's and the student's logits and
`data_loss` the compiled loss (the gates' L0 penalty is added after, unchanged). The teacher
runs in inference mode on the same batch inside the training step, so it sees exactly what the
student sees, whatever the feed (`DynamicBatches`, arrays, `tf.data`); its weights never
change and are not part of the student (not saved with it, not touched by pruning surgery).
Evaluation (`val_loss`) keeps the plain data loss.

With `from_logits=False` (the models end in a softmax, like the compiled
`"sparse_categorical_crossentropy"`) the logits are recovered as `log(p)`, exact up to a
per-example constant that softmax ignores.
"""

import keras
import tensorflow as tf
from keras.src.losses import loss as loss_module

from tfdynhp.validation import check_real

EPSILON = 1e-7


def soft_targets_kl(teacher_out, student_out, temperature, from_logits=False):
    """Mean over the batch of `T^2 KL(softmax(z_t / T) || softmax(z_s / T))` (a tensor).

    Args:
        teacher_out, student_out: `(batch, classes)` probabilities, or logits with
            `from_logits=True`.
        temperature: `T > 0`.
        from_logits: whether the outputs are logits. Defaults to `False`.
    """
    def logits(out):
        out = tf.cast(out, tf.float32)
        return out if from_logits else tf.math.log(tf.clip_by_value(out, EPSILON, 1.0))

    t_log = tf.nn.log_softmax(tf.stop_gradient(logits(teacher_out)) / temperature, axis=-1)
    s_log = tf.nn.log_softmax(logits(student_out) / temperature, axis=-1)
    kl = tf.reduce_sum(tf.exp(t_log) * (t_log - s_log), axis=-1)
    return temperature**2 * tf.reduce_mean(kl)


class Distillation:
    """A teacher for a `GatedModel`'s training loss (see the module docstring).

    Args:
        teacher: a Keras model taking the student's input and giving the same number of
            classes (e.g. the dense model the gated one was pruned from).
        temperature: `T`, the softening of both distributions. Defaults to `4.0`.
        alpha: weight of the distillation term; `1 - alpha` weights the data loss. Defaults
            to `0.5`.
        from_logits: whether teacher and student output logits. Defaults to `False`
            (probabilities, as models ending in softmax).

    Raises:
        TypeError: if `teacher` is not a Keras model.
        ValueError: for a temperature <= 0 or alpha outside [0, 1].
    """

    def __init__(self, teacher, temperature=4.0, alpha=0.5, from_logits=False):
        if not isinstance(teacher, keras.Model):
            raise TypeError("Expected `teacher` to be a Keras model (e.g. the dense model, or "
                            "`keras.saving.load_model(path)`). Received: "
                            f"{type(teacher).__name__}")
        self.teacher = teacher
        self.temperature = check_real("temperature", temperature)
        if self.temperature <= 0:
            raise ValueError(f"Expected `temperature` > 0. Received: temperature={temperature}")
        self.alpha = check_real("alpha", alpha, 0.0, 1.0)
        self.from_logits = bool(from_logits)
        for layer in teacher.layers:
            layer.trainable = False

    def check_student(self, student):
        """Raises `ValueError` unless `student` has the teacher's input and output shapes."""
        pairs = (("input", self.teacher.inputs, student.inputs),
                 ("output", self.teacher.outputs, student.outputs))
        for what, theirs, ours in pairs:
            if len(theirs) != 1 or len(ours) != 1:
                raise ValueError(f"Distillation needs models of one {what}; the teacher has "
                                 f"{len(theirs)}, the student {len(ours)}.")
            if tuple(theirs[0].shape[1:]) != tuple(ours[0].shape[1:]):
                raise ValueError(
                    f"The teacher's {what} shape {tuple(theirs[0].shape[1:])} differs from the "
                    f"student's {tuple(ours[0].shape[1:])}. Use a teacher trained on the same "
                    "inputs and classes.")

    def combine(self, data_loss, x, y_pred):
        """The training loss: `(1 - alpha) data_loss + alpha T^2 KL`; `data_loss` is the
        compiled loss as Keras computes it (scaled for the replicas), and so is the result."""
        soft = soft_targets_kl(self.teacher(x, training=False), y_pred, self.temperature,
                               self.from_logits)
        soft = tf.cast(loss_module.scale_loss_for_distribution(soft), data_loss.dtype)
        return (1.0 - self.alpha) * data_loss + self.alpha * soft

    def describe(self):
        """A JSON-serializable summary (no weights)."""
        return {"teacher": self.teacher.name, "temperature": self.temperature,
                "alpha": self.alpha, "from_logits": self.from_logits}
