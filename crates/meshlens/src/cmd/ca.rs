//! `meshlens ca`: the mesh CA. `init` makes the root, `issue` a workload certificate with its
//! SPIFFE id, written under Istio's file names for `meshlens proxy --cert-dir`.

use std::path::PathBuf;

use anyhow::Context;
use meshlens_identity::{Ca, IdentityError};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: CaCommand,
}

#[derive(clap::Subcommand)]
pub enum CaCommand {
    /// Create a self-signed mesh root (ECDSA P-256): root-cert.pem, ca-key.pem, ca.json.
    Init(InitArgs),
    /// Sign a workload certificate for spiffe://TRUST_DOMAIN/ns/NS/sa/SA: cert-chain.pem,
    /// key.pem, root-cert.pem.
    Issue(IssueArgs),
}

#[derive(clap::Args)]
pub struct InitArgs {
    /// Directory of the CA; an existing CA there is never overwritten.
    #[arg(long, default_value = "meshlens-ca")]
    pub dir: PathBuf,
    /// The mesh's trust domain (the host part of every SPIFFE id).
    #[arg(long = "trust-domain", default_value = "cluster.local")]
    pub trust_domain: String,
}

#[derive(clap::Args)]
pub struct IssueArgs {
    /// The workload's namespace.
    #[arg(long)]
    pub ns: String,
    /// The workload's service account.
    #[arg(long)]
    pub sa: String,
    /// Directory of the CA (made by `meshlens ca init`).
    #[arg(long, default_value = "meshlens-ca")]
    pub dir: PathBuf,
    /// Where to write the certificate files (default: DIR/NS/SA).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Certificate lifetime, e.g. 1h, 24h, 7d.
    #[arg(long, default_value = "24h")]
    pub ttl: String,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        CaCommand::Init(a) => init(a),
        CaCommand::Issue(a) => issue(a),
    }
}

fn init(a: InitArgs) -> anyhow::Result<()> {
    let ca = Ca::init(&a.dir, &a.trust_domain)
        .with_context(|| format!("creating a CA in {}", a.dir.display()))?;
    println!(
        "created a mesh CA for trust domain {} in {}",
        ca.trust_domain(),
        a.dir.display()
    );
    for f in [
        meshlens_identity::ca::ROOT_CERT,
        meshlens_identity::ca::CA_KEY,
        meshlens_identity::ca::CA_META,
    ] {
        println!("  wrote {}", a.dir.join(f).display());
    }
    Ok(())
}

fn issue(a: IssueArgs) -> anyhow::Result<()> {
    let ttl = meshlens_model::parse_duration(&a.ttl)
        .map_err(|e| anyhow::anyhow!("--ttl {:?}: {e}", a.ttl))?;
    let ca = Ca::load(&a.dir).map_err(|e| match e {
        IdentityError::NoCa { .. } => anyhow::anyhow!(
            "{e}\n(create one with `meshlens ca init --dir {}`)",
            a.dir.display()
        ),
        e => anyhow::Error::new(e).context(format!("loading the CA in {}", a.dir.display())),
    })?;
    let issued = ca
        .issue(&a.ns, &a.sa, ttl)
        .with_context(|| format!("issuing a certificate for --ns {} --sa {}", a.ns, a.sa))?;
    let out = a.out.unwrap_or_else(|| a.dir.join(&a.ns).join(&a.sa));
    let files = issued
        .write(&out)
        .with_context(|| format!("writing the certificate to {}", out.display()))?;
    println!(
        "issued {} (valid for {}, until {})",
        issued.id,
        a.ttl,
        meshlens_model::time::rfc3339(issued.not_after)
    );
    for f in files {
        println!("  wrote {}", f.display());
    }
    Ok(())
}
