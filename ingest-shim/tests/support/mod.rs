//! Test harness helpers: AWS SDK configuration for the emulator.

#![allow(dead_code, reason = "each test binary uses a different part")]

pub use callrec_fixtures::moto::Moto;

/// Static test credentials and region (the emulator accepts any) pointing at `moto`.
pub fn sdk_config(moto: &Moto) -> aws_config::SdkConfig {
    aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(&moto.endpoint)
        .credentials_provider(aws_sdk_dynamodb::config::SharedCredentialsProvider::new(
            aws_sdk_dynamodb::config::Credentials::new("test", "test", None, None, "tests"),
        ))
        .build()
}
