// The 3D preview: three.js with its GLTFLoader and OrbitControls on the render farm's web GLB.
// This module is loaded on demand (a dynamic import), so pages without a model never fetch
// three.js. The canvas is operable by keyboard: arrows orbit, +/- zoom, 0 resets the view.

import {
  AmbientLight,
  Box3,
  Color,
  DoubleSide,
  Mesh,
  MeshStandardMaterial,
  DirectionalLight,
  PerspectiveCamera,
  Scene,
  Vector3,
  WebGLRenderer,
} from "three";
import { GLTFLoader } from "three/examples/jsm/loaders/GLTFLoader.js";
import { OrbitControls } from "three/examples/jsm/controls/OrbitControls.js";

export interface ModelViewer {
  element: HTMLCanvasElement;
  destroy(): void;
}

/** Show the GLB in `data` in a canvas; rejects when WebGL is unavailable or the GLB is bad. */
export async function showModel(data: ArrayBuffer, label: string): Promise<ModelViewer> {
  const canvas = document.createElement("canvas");
  canvas.className = "model-canvas";
  canvas.tabIndex = 0;
  canvas.setAttribute("role", "img");
  canvas.setAttribute("aria-label", `${label}. Drag or use the arrow keys to turn it, + and - to zoom, 0 to reset.`);
  const renderer = new WebGLRenderer({ canvas, antialias: true, preserveDrawingBuffer: true });
  const scene = new Scene();
  scene.background = new Color(0xf3f4f6);
  scene.add(new AmbientLight(0xffffff, 1.2));
  const sun = new DirectionalLight(0xffffff, 2);
  sun.position.set(1, 2, 3);
  scene.add(sun);

  const gltf = await new GLTFLoader().parseAsync(data, "");
  gltf.scene.traverse((node) => {
    if (!(node instanceof Mesh)) return;
    // the farm's web GLB may come without normals: light needs them, and both faces drawn
    if (!node.geometry.getAttribute("normal")) node.geometry.computeVertexNormals();
    const materials = Array.isArray(node.material) ? node.material : [node.material];
    for (const material of materials) {
      material.side = DoubleSide;
      // glTF's default metalness is 1: with no environment to reflect, metal looks black
      if (material instanceof MeshStandardMaterial) {
        material.metalness = Math.min(material.metalness, 0.1);
        material.roughness = Math.max(material.roughness, 0.6);
      }
    }
    if (!node.material || materials.length === 0) node.material = new MeshStandardMaterial({ color: 0x9ca3af, side: DoubleSide });
  });
  scene.add(gltf.scene);
  const box = new Box3().setFromObject(gltf.scene);
  const center = box.getCenter(new Vector3());
  const radius = Math.max(box.getSize(new Vector3()).length() / 2, 1e-6);
  const camera = new PerspectiveCamera(40, 4 / 3, radius / 100, radius * 100);
  const home = center.clone().add(new Vector3(1, 0.8, 1.2).normalize().multiplyScalar(radius * 2.8));
  camera.position.copy(home);
  const controls = new OrbitControls(camera, canvas);
  controls.target.copy(center);
  controls.enableDamping = false;
  controls.update();

  let frame = 0;
  const draw = () => {
    frame = 0;
    const width = canvas.clientWidth || 480;
    const height = canvas.clientHeight || 360;
    if (canvas.width !== Math.floor(width * devicePixelRatio)) {
      renderer.setPixelRatio(devicePixelRatio);
      renderer.setSize(width, height, false);
      camera.aspect = width / height;
      camera.updateProjectionMatrix();
    }
    renderer.render(scene, camera);
  };
  const request = () => {
    if (!frame) frame = requestAnimationFrame(draw);
  };
  controls.addEventListener("change", request);
  const resize = new ResizeObserver(request);
  resize.observe(canvas);

  const step = Math.PI / 18;
  canvas.addEventListener("keydown", (event) => {
    const offset = camera.position.clone().sub(controls.target);
    const orbit = (yaw: number, pitch: number) => {
      offset.applyAxisAngle(new Vector3(0, 1, 0), yaw);
      const side = new Vector3().crossVectors(offset, camera.up).normalize();
      offset.applyAxisAngle(side, pitch);
      camera.position.copy(controls.target).add(offset);
    };
    switch (event.key) {
      case "ArrowLeft": orbit(-step, 0); break;
      case "ArrowRight": orbit(step, 0); break;
      case "ArrowUp": orbit(0, step); break;
      case "ArrowDown": orbit(0, -step); break;
      case "+": case "=": camera.position.copy(controls.target).add(offset.multiplyScalar(0.85)); break;
      case "-": camera.position.copy(controls.target).add(offset.multiplyScalar(1 / 0.85)); break;
      case "0": camera.position.copy(home); break;
      default: return;
    }
    event.preventDefault();
    controls.update();
    request();
  });
  request();
  return {
    element: canvas,
    destroy() {
      resize.disconnect();
      controls.dispose();
      renderer.dispose();
    },
  };
}
