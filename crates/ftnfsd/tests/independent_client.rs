//! ftnfsd against an independent client library (`nfs3_client` from crates.io, written by
//! others): mount, create, write, read back, list with READDIRPLUS.

use std::process::{Command, Stdio};
mod common;

use nfs3_client::nfs3_types::nfs3::{
    self, createhow3, diropargs3, sattr3, stable_how, CREATE3args, Nfs3Option, READ3args,
    READDIRPLUS3args, WRITE3args,
};
use nfs3_client::nfs3_types::rpc::{auth_unix, opaque_auth};
use nfs3_client::nfs3_types::xdr_codec::Opaque;
use nfs3_client::tokio::TokioConnector;
use nfs3_client::Nfs3ConnectionBuilder;

#[tokio::test]
async fn nfs3_client_library_round_trip() {
    let t = tempfile::tempdir().unwrap();
    let export = t.path().join("export");
    std::fs::create_dir(&export).unwrap();
    std::fs::write(
        t.path().join("exports"),
        format!(
            "{} 127.0.0.1(rw,insecure,no_root_squash)\n",
            export.display()
        ),
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ftnfsd"))
        .args(["--exports", t.path().join("exports").to_str().unwrap()])
        .args(["--state-dir", t.path().join("state").to_str().unwrap()])
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--no-portmap",
        ])
        .args([
            "--admin-socket",
            t.path().join("adm.sock").to_str().unwrap(),
        ])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    common::wait_listening(port);
    let auth = auth_unix {
        stamp: 1,
        machinename: Opaque::borrowed(b"test"),
        uid: 0,
        gid: 0,
        gids: vec![],
    };
    let mut conn =
        Nfs3ConnectionBuilder::new(TokioConnector, "127.0.0.1", export.to_str().unwrap())
            .mount_port(port)
            .nfs3_port(port)
            .connect_from_privileged_port(false)
            .credential(opaque_auth::auth_unix(&auth))
            .mount()
            .await
            .expect("mount");
    let root = conn.root_nfs_fh3();
    let created = conn
        .create(&CREATE3args {
            where_: diropargs3 {
                dir: root.clone(),
                name: b"hello.txt".as_slice().into(),
            },
            how: createhow3::GUARDED(sattr3::default()),
        })
        .await
        .unwrap()
        .unwrap();
    let Nfs3Option::Some(fh) = created.obj else {
        panic!("no handle")
    };
    let data = b"written by an independent client".repeat(1000);
    let w = conn
        .write(&WRITE3args {
            file: fh.clone(),
            offset: 0,
            count: data.len() as u32,
            stable: stable_how::FILE_SYNC,
            data: Opaque::borrowed(&data),
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(w.committed, stable_how::FILE_SYNC);
    let r = conn
        .read(&READ3args {
            file: fh,
            offset: 0,
            count: 1 << 20,
        })
        .await
        .unwrap()
        .unwrap();
    assert!(r.eof);
    assert_eq!(r.data.as_ref(), &data[..]);
    assert_eq!(std::fs::read(export.join("hello.txt")).unwrap(), data);
    let list = conn
        .readdirplus(&READDIRPLUS3args {
            dir: root,
            cookie: 0,
            cookieverf: nfs3::cookieverf3::default(),
            dircount: 4096,
            maxcount: 65536,
        })
        .await
        .unwrap()
        .unwrap();
    let names: Vec<Vec<u8>> = list
        .reply
        .entries
        .into_inner()
        .into_iter()
        .map(|e| e.name.0.to_vec())
        .collect();
    assert!(names.contains(&b"hello.txt".to_vec()), "{names:?}");
    assert!(list.reply.eof);
    conn.unmount().await.unwrap();
    let _ = child.kill();
    let _ = child.wait();
}
