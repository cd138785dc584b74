//! A service served over TLS (`grpc.tls_cert`, `grpc.tls_key`), with client
//! certificates optional or required (`grpc.client_ca`, `grpc.require_client_cert`),
//! as clients see it over a real socket.

use std::net::SocketAddr;

use circle_proto::enrollment::v1 as pb;
use circle_testkit::TestEnv;
use pb::enrollment_service_client::EnrollmentServiceClient;
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

use crate::pki::Pki;
use crate::support::admin;

/// The enrollment service alone, started with `configure`d settings; stopped on drop.
struct Served {
    address: SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
    _env: TestEnv,
}

async fn serve(configure: impl FnOnce(&mut circle_config::Config)) -> anyhow::Result<Served> {
    let mut env = TestEnv::new().await?;
    configure(&mut env.config);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = circle_enrollment::start(&env.config, async {
        let _ = stopped.await;
    })
    .await?;
    Ok(Served {
        address: running.local_addr,
        _stop: stop,
        _env: env,
    })
}

/// A client over TLS that trusts the test's server CA, with `identity` if given.
async fn tls_client(
    pki: &Pki,
    address: SocketAddr,
    identity: Option<(&str, &str)>,
) -> anyhow::Result<EnrollmentServiceClient<Channel>> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&pki.server_ca_pem))
        .domain_name("localhost");
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    let channel = Channel::from_shared(format!("https://{address}"))?
        .tls_config(tls)?
        .connect()
        .await?;
    Ok(EnrollmentServiceClient::new(channel))
}

/// An answer from the service itself (not a transport failure): an unknown clinic.
async fn asks(client: &mut EnrollmentServiceClient<Channel>) -> Result<Code, tonic::Status> {
    let request = admin(pb::GetClinicRequest {
        name: "networks/acme/clinics/nowhere".into(),
        ..Default::default()
    });
    match client.get_clinic(request).await {
        Ok(_) => Ok(Code::Ok),
        Err(status) if status.code() == Code::NotFound => Ok(Code::NotFound),
        Err(status) => Err(status),
    }
}

/// Whether a client gets nothing from the service: no connection, or a call that fails
/// in transport (never an answer of the service).
async fn refused(client: anyhow::Result<EnrollmentServiceClient<Channel>>) -> bool {
    match client {
        Err(_) => true,
        Ok(mut client) => asks(&mut client).await.is_err(),
    }
}

#[tokio::test]
async fn over_tls_a_client_that_trusts_the_ca_is_served_and_plaintext_is_refused()
-> anyhow::Result<()> {
    let pki = Pki::new("tls")?;
    let served = serve(|config| {
        config.grpc.tls_cert = Some(pki.server_cert.clone());
        config.grpc.tls_key = Some(pki.server_key.clone());
    })
    .await?;

    let mut client = tls_client(&pki, served.address, None).await?;
    assert_eq!(
        asks(&mut client).await?,
        Code::NotFound,
        "the service answers"
    );

    let plaintext = async {
        let channel = Channel::from_shared(format!("http://{}", served.address))?
            .connect()
            .await?;
        anyhow::Ok(EnrollmentServiceClient::new(channel))
    };
    assert!(
        refused(plaintext.await).await,
        "a plaintext client is refused"
    );

    // A client that does not trust the server's CA does not talk to it either.
    let other = Pki::new("tls-other")?;
    assert!(refused(tls_client(&other, served.address, None).await).await);
    Ok(())
}

#[tokio::test]
async fn with_client_certificates_required_only_a_client_with_one_from_the_client_ca_is_served()
-> anyhow::Result<()> {
    let pki = Pki::new("mtls")?;
    let served = serve(|config| {
        config.grpc.tls_cert = Some(pki.server_cert.clone());
        config.grpc.tls_key = Some(pki.server_key.clone());
        config.grpc.client_ca = Some(pki.client_ca.clone());
        config.grpc.require_client_cert = true;
    })
    .await?;

    assert!(
        refused(tls_client(&pki, served.address, None).await).await,
        "a client without a certificate is refused"
    );
    assert!(
        refused(
            tls_client(
                &pki,
                served.address,
                Some((&pki.stranger_cert_pem, &pki.stranger_key_pem))
            )
            .await
        )
        .await,
        "a certificate from another CA is refused"
    );
    let mut client = tls_client(
        &pki,
        served.address,
        Some((&pki.client_cert_pem, &pki.client_key_pem)),
    )
    .await?;
    assert_eq!(asks(&mut client).await?, Code::NotFound);
    Ok(())
}

#[tokio::test]
async fn with_client_certificates_optional_both_kinds_of_client_are_served() -> anyhow::Result<()> {
    let pki = Pki::new("mtls-optional")?;
    let served = serve(|config| {
        config.grpc.tls_cert = Some(pki.server_cert.clone());
        config.grpc.tls_key = Some(pki.server_key.clone());
        config.grpc.client_ca = Some(pki.client_ca.clone());
    })
    .await?;
    let mut without = tls_client(&pki, served.address, None).await?;
    assert_eq!(asks(&mut without).await?, Code::NotFound);
    let mut with = tls_client(
        &pki,
        served.address,
        Some((&pki.client_cert_pem, &pki.client_key_pem)),
    )
    .await?;
    assert_eq!(asks(&mut with).await?, Code::NotFound);
    Ok(())
}

#[tokio::test]
async fn a_missing_certificate_file_stops_the_start_with_its_path() -> anyhow::Result<()> {
    let pki = Pki::new("missing")?;
    let missing = pki.path("nowhere.pem");
    let result = serve(|config| {
        config.grpc.tls_cert = Some(missing.clone());
        config.grpc.tls_key = Some(pki.server_key.clone());
    })
    .await;
    let Err(error) = result else {
        anyhow::bail!("started without its certificate");
    };
    assert!(
        error.to_string().contains("nowhere.pem"),
        "the error names the file: {error}"
    );
    Ok(())
}
