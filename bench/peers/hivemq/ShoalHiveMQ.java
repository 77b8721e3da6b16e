// SPDX-License-Identifier: Apache-2.0

import com.hivemq.configuration.service.InternalConfigurations;
import com.hivemq.embedded.EmbeddedExtension;
import com.hivemq.embedded.EmbeddedHiveMQ;
import com.hivemq.extension.sdk.api.ExtensionMain;
import com.hivemq.extension.sdk.api.auth.SimpleAuthenticator;
import com.hivemq.extension.sdk.api.parameter.ExtensionStartInput;
import com.hivemq.extension.sdk.api.parameter.ExtensionStartOutput;
import com.hivemq.extension.sdk.api.parameter.ExtensionStopInput;
import com.hivemq.extension.sdk.api.parameter.ExtensionStopOutput;
import com.hivemq.extension.sdk.api.services.Services;
import java.nio.file.Path;
import java.util.concurrent.CountDownLatch;

/**
 * HiveMQ CE embedded as a bench/compare peer. Usage: ShoalHiveMQ CONF_DIR DATA_DIR INFLIGHT.
 * CONF_DIR/config.xml (written by bench/peers.py) sets the listener, the limits and in-memory
 * persistence; the embedded extension lets every client in (HiveMQ CE refuses all clients when
 * no authenticator is installed). Prints READY once started; stops on SIGTERM.
 */
public final class ShoalHiveMQ {
    /** Allows every client: the other brokers in the run take anonymous clients too. */
    static final class AllowAll implements ExtensionMain {
        @Override
        public void extensionStart(ExtensionStartInput in, ExtensionStartOutput out) {
            Services.securityRegistry()
                    .setAuthenticatorProvider(input -> (SimpleAuthenticator) (authIn, authOut) -> authOut.authenticateSuccessfully());
        }

        @Override
        public void extensionStop(ExtensionStopInput in, ExtensionStopOutput out) {}
    }

    public static void main(String[] args) throws Exception {
        // The outgoing in-flight window for MQTT 3.1.1 clients is not in config.xml.
        InternalConfigurations.MAX_INFLIGHT_WINDOW_SIZE_MESSAGES = Integer.parseInt(args[2]);
        EmbeddedExtension ext = EmbeddedExtension.builder()
                .withId("shoal-allow-all")
                .withName("allow all")
                .withVersion("1")
                .withExtensionMain(new AllowAll())
                .build();
        EmbeddedHiveMQ hivemq = EmbeddedHiveMQ.builder()
                .withConfigurationFolder(Path.of(args[0]))
                .withDataFolder(Path.of(args[1]))
                .withExtensionsFolder(Path.of(args[1], "extensions"))
                .withEmbeddedExtension(ext)
                .build();
        CountDownLatch stop = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                hivemq.stop().join();
            } catch (RuntimeException e) {
                // stopping anyway
            }
            stop.countDown();
        }));
        hivemq.start().join();
        System.out.println("READY");
        System.out.flush();
        stop.await();
    }
}
