use clap::Parser;

fn main() -> anyhow::Result<()> {
    let cli = mapwright::cli::Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(mapwright::cli::run(cli))
}
