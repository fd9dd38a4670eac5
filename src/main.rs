//! The `flashgate` binary: parse the command line and hand over to [`flashgate::cli`].

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    flashgate::cli::main().await
}
