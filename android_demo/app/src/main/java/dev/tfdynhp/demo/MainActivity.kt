package dev.tfdynhp.demo

import android.app.Activity
import android.os.Bundle
import android.os.SystemClock
import android.widget.TextView
import com.google.ai.edge.litert.Accelerator
import com.google.ai.edge.litert.CompiledModel
import com.google.ai.edge.litert.Environment
import org.json.JSONObject
import kotlin.math.abs
import kotlin.math.floor
import kotlin.math.sign

/**
 * Classifies the bundled sample with the int8 model exported by
 * `tfdynhp.converters.export(model, "android", "android_demo", x)`.
 *
 * Everything model-specific (file names, input shape, dtype, scale, zero point) is read from
 * model.json, so a re-exported model needs no code change.
 */
class MainActivity : Activity() {

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        setContentView(R.layout.activity_main)
        val view = findViewById<TextView>(R.id.result)
        view.text = try {
            classifySample()
        } catch (e: Exception) {
            "Could not run the model: ${e.message}\n\nExport the assets first (see README.md)."
        }
    }

    private fun readAsset(name: String): String =
        assets.open(name).bufferedReader().use { it.readText() }

    private fun classifySample(): String {
        val meta = JSONObject(readAsset(MODEL_JSON))
        val input = meta.getJSONObject("input")
        val output = meta.getJSONObject("output")
        val shape = input.getJSONArray("shape")
        val inputDtype = input.getString("dtype")
        val inputScale = input.getDouble("scale")
        val inputZeroPoint = input.getInt("zero_point")
        val outputDtype = output.getString("dtype")
        val outputScale = output.getDouble("scale")
        val outputZeroPoint = output.getInt("zero_point")
        val labels = readAsset(meta.getString("labels_file")).lines().filter { it.isNotEmpty() }

        val sample = JSONObject(readAsset(SAMPLE_JSON))
        val features = sample.getJSONArray("input")
        val expectedClass = sample.getInt("expected_class")

        var inputSize = 1
        for (i in 0 until shape.length()) inputSize *= shape.getInt(i)
        require(features.length() == inputSize) {
            "sample.json has ${features.length()} values, the model input needs $inputSize"
        }
        val quantized = ByteArray(inputSize) { i ->
            quantize(features.getDouble(i), inputScale, inputZeroPoint, inputDtype)
        }

        val env = Environment.create()
        val model = CompiledModel.create(
            assets, meta.getString("model_file"), CompiledModel.Options(Accelerator.CPU), env,
        )
        val inputBuffers = model.createInputBuffers()
        val outputBuffers = model.createOutputBuffers()
        try {
            inputBuffers[0].writeInt8(quantized)
            val start = SystemClock.elapsedRealtimeNanos()
            model.run(inputBuffers, outputBuffers)
            val micros = (SystemClock.elapsedRealtimeNanos() - start) / 1000
            val raw = outputBuffers[0].readInt8()
            val scores = raw.map { b ->
                val q = if (outputDtype == "uint8") b.toInt() and 0xFF else b.toInt()
                outputScale * (q - outputZeroPoint)
            }
            val best = scores.indices.maxByOrNull { scores[it] } ?: -1
            val label = labels.getOrElse(best) { best.toString() }
            val expected = labels.getOrElse(expectedClass) { expectedClass.toString() }
            return buildString {
                appendLine("Predicted: $label (class $best, score ${"%.3f".format(scores[best])})")
                appendLine("Host LiteRT predicted: $expected (class $expectedClass)")
                appendLine(if (best == expectedClass) "Match" else "MISMATCH")
                appendLine("Inference: $micros us, input $inputDtype[$inputSize]")
            }
        } finally {
            inputBuffers.forEach { it.close() }
            outputBuffers.forEach { it.close() }
            model.close()
            env.close()
        }
    }

    companion object {
        const val MODEL_JSON = "model.json"
        const val SAMPLE_JSON = "sample.json"

        /** q = clamp(round_half_away_from_zero(x / scale) + zeroPoint), as in model.json. */
        fun quantize(x: Double, scale: Double, zeroPoint: Int, dtype: String): Byte {
            val v = x / scale
            val q = sign(v) * floor(abs(v) + 0.5) + zeroPoint
            return when (dtype) {
                "int8" -> q.coerceIn(-128.0, 127.0).toInt().toByte()
                "uint8" -> q.coerceIn(0.0, 255.0).toInt().toByte()
                else -> throw IllegalArgumentException(
                    "Unsupported input dtype $dtype: export with to_int8_tflite (int8 or uint8)"
                )
            }
        }
    }
}
