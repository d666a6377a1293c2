pub mod pb {
    tonic::include_proto!("sessiond.v1");
}
fn main(){}
