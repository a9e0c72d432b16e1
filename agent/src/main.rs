fn main() {
    println!("xvrrpd {}", env!("CARGO_PKG_VERSION"));
}
