plugins {
    id("com.android.application")
    id("org.jetbrains.kotlin.android")
}

android {
    namespace = "dev.tfdynhp.demo"
    compileSdk = 35

    defaultConfig {
        applicationId = "dev.tfdynhp.demo"
        minSdk = 24 // LiteRT 2.x AARs declare minSdk 24
        targetSdk = 35
        versionCode = 1
        versionName = "0.1.0"
    }

    androidResources {
        // Keep model.tflite uncompressed so LiteRT can memory-map it from the APK.
        noCompress += "tflite"
    }

    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }
    kotlinOptions {
        jvmTarget = "17"
    }
}

dependencies {
    implementation("com.google.ai.edge.litert:litert:2.3.0")
}
