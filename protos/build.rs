fn main() {
    protobuf_codegen::Codegen::new()
        .pure()
        .include("proto")
        .input("proto/runtimeoptions.proto")
        .cargo_out_dir("protos")
        .run_from_script();
}
